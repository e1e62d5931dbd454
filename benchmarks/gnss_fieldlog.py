"""GNSS decoding and field-logger cost, measured side by side in one run.

1. What one ``log_frame`` call costs the inference thread with the field logger (bounded queue, JPEG encoding and
   disk I/O in the writer thread) vs. a logger that encodes and writes synchronously in the caller.
2. Sustained writer throughput (camera frames and GNSS fixes per second), chunks flushed, records dropped.
3. NMEA decoding throughput of :class:`edge_geoloc.sensors.NmeaReader` (epochs of GGA + RMC + GST).

    python benchmarks/gnss_fieldlog.py            # 300 frames 640x480, 20000 NMEA epochs
    python benchmarks/gnss_fieldlog.py --quick    # 60 frames, 2000 epochs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger, encode_jpeg
from edge_geoloc.fieldlog import messages as m
from edge_geoloc.fieldlog.storage import BagPart
from edge_geoloc.sensors import NmeaReader
from edge_geoloc.sensors.nmea_writer import format_epoch
from edge_geoloc.types import CameraFrame, CovarianceType, GnssFix


def frames(n: int, seed: int = 0) -> list[CameraFrame]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    base = np.ascontiguousarray(np.repeat(np.repeat(base[::8, ::8], 8, 0), 8, 1))  # JPEG-friendly texture
    return [CameraFrame(stamp_s=1000.0 + 0.1 * i, image_rgb=np.roll(base, i, axis=1)) for i in range(n)]


def percentiles_us(samples_s: list[float]) -> dict[str, float]:
    us = np.asarray(samples_s) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}


def async_logger(tmp: Path, data: list[CameraFrame]) -> dict:
    cfg = FieldLogConfig(camera_rate_hz=0.0, queue_size=len(data) + 8)
    per_call = []
    start = time.perf_counter()
    with FieldLogger(tmp / "async", cfg) as logger:
        for frame in data:
            t0 = time.perf_counter()
            logger.log_frame(frame)
            per_call.append(time.perf_counter() - t0)
        logger.flush(600.0)
    wall_s = time.perf_counter() - start
    c = logger.counters
    return {**percentiles_us(per_call), "writer_frames_per_s": len(data) / wall_s, "written": c.written,
            "dropped": c.dropped_queue_full, "chunks_flushed": c.chunks_flushed}


def sync_logger(tmp: Path, data: list[CameraFrame]) -> dict:
    bag = BagPart(tmp / "sync", chunk_bytes=2**20, fsync=False)
    per_call = []
    for frame in data:
        t0 = time.perf_counter()
        msg = m.compressed_image(frame.stamp_s, encode_jpeg(frame.image_rgb, 90), "camera")
        bag.write(m.CAMERA, frame.stamp_s, m.serialize(msg, m.TOPIC_TYPES[m.CAMERA]))
        per_call.append(time.perf_counter() - t0)
    bag.close()
    return percentiles_us(per_call)


def gnss_logging(tmp: Path, n: int) -> dict:
    fix = GnssFix(stamp_s=0.0, lat_deg=52.0, lon_deg=4.36, alt_m=40.0)
    start = time.perf_counter()
    with FieldLogger(tmp / "gnss", FieldLogConfig(queue_size=n + 8)) as logger:
        for i in range(n):
            logger.log_gnss(GnssFix(stamp_s=float(i), lat_deg=fix.lat_deg, lon_deg=fix.lon_deg, alt_m=fix.alt_m))
        logger.flush(600.0)
    return {"gnss_fixes_per_s": n / (time.perf_counter() - start), "written": logger.counters.written}


def nmea_decoding(n_epochs: int) -> dict:
    cov = (4.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 9.0)
    lines = []
    for i in range(n_epochs):
        fix = GnssFix(stamp_s=1.7e9 + 0.2 * i, lat_deg=52.0 + 1e-6 * i, lon_deg=4.36, alt_m=40.0,
                      position_covariance_m2=cov, covariance_type=CovarianceType.KNOWN, hdop=0.9, num_satellites=9)
        lines += format_epoch(fix)
    data = ("\r\n".join(lines) + "\r\n").encode()
    reader = NmeaReader()
    start = time.perf_counter()
    fixes = [f for i in range(0, len(data), 4096) for f in reader.feed(data[i:i + 4096])] + reader.flush()
    wall_s = time.perf_counter() - start
    return {"epochs_per_s": n_epochs / wall_s, "sentences_per_s": len(lines) / wall_s, "fixes": len(fixes),
            "rejected": reader.counters.total_rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gnss_fieldlog.json")
    args = parser.parse_args()
    n_frames, n_epochs = (60, 2000) if args.quick else (300, 20000)
    data = frames(n_frames)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"async": async_logger(Path(tmp), data), "sync": sync_logger(Path(tmp), data),
                  "gnss": gnss_logging(Path(tmp), 20 * n_frames), "nmea": nmea_decoding(n_epochs)}
    ratio = result["sync"]["p50_us"] / result["async"]["p50_us"]
    print(f"{'caller cost per 640x480 frame':<34}{'p50 us':>10}{'p99 us':>10}{'max us':>10}")
    for key in ("sync", "async"):
        r = result[key]
        print(f"  {key + ' logger':<32}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['max_us']:>10.0f}")
    print(f"  sync / async (p50){ratio:>25.1f}x")
    a = result["async"]
    print(f"writer: {a['writer_frames_per_s']:.1f} frames/s, {a['written']} written, {a['dropped']} dropped, "
          f"{a['chunks_flushed']} chunks; {result['gnss']['gnss_fixes_per_s']:.0f} GNSS fixes/s")
    n = result["nmea"]
    print(f"NMEA: {n['epochs_per_s']:.0f} epochs/s ({n['sentences_per_s']:.0f} sentences/s), {n['fixes']} fixes")
    meta = {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
            "cpu": platform.processor() or platform.machine(), "cpus_available": len(os.sched_getaffinity(0)),
            "frames": n_frames, "nmea_epochs": n_epochs, "sync_over_async_p50": ratio}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, **result}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
