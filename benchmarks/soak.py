"""Soak benchmark: a long stream of 30 Hz camera frames (+10 Hz GNSS) through the on-board runtime; does memory
stay flat, and how many frames are dropped?

What runs: ONNX Runtime backends of registry models (untrained weights: cost does not depend on the values),
the real ``Pipeline`` (retrieval, tile search, localizer, EKF) over a tile index of a synthetic area, and a
``FieldLogger`` writing the session to MCAP (frames at its camera rate, every GNSS fix and fused state).

**Virtual time, not wall time.** Frame ``i`` is stamped ``i / rate_hz``. The pipeline is free again at the
stamp of the frame it took plus the wall time that frame really cost; a frame stamped while it is still busy
is dropped and counted (the node's latest-frame slot does the same), its GNSS fix is still fused. Nothing
sleeps, so the run is faster than real time whenever the pipeline has idle time and about real time when it
is saturated; the virtual duration is what ``--duration-s`` sets (default 600 s = 10 min of 30 Hz input).

Memory: resident set size (``/proc/self/statm``) sampled every ``--sample-s`` of virtual time. Growth is
the median RSS of the last tenth of the run over the median of the tenth after warm-up (the first tenth,
when ORT arenas, caches and the logger's queue fill); the target is < 5 %. The JSON keeps the whole curve.

    python benchmarks/soak.py                        # 10 min of 30 Hz input
    python benchmarks/soak.py --duration-s 120       # shorter, when the CPU is shared
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from runtime import export_models, make_area

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Resident set size of this process (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE_BYTES / 2**20


LOOP_PERIOD_S = 120.0  # one lap of a 300 m wide loop: ~8 m/s, a slow drone


def frame_pool(ortho: Path, count: int, tile_m: float) -> list[tuple[np.ndarray, float, float]]:
    """``count`` nadir crops (image, lat, lon) evenly spaced along a loop over the area, lap after lap."""
    from edge_geoloc.geo import GeoRaster

    pool = []
    with GeoRaster(ortho) as raster:
        lat0, lon0 = raster.georef.pixel_to_latlon(raster.georef.height_px / 2, raster.georef.width_px / 2)
        for i in range(count):
            angle = 2 * np.pi * i / count
            lat, lon = lat0 + 1.35e-3 * np.sin(angle), lon0 + 2.2e-3 * np.cos(angle)
            pool.append((raster.read_around_latlon(lat, lon, 0.5 * tile_m, 256).image, lat, lon))
    return pool


def gnss_fix(stamp_s: float, lat: float, lon: float, rng: np.random.Generator):
    from edge_geoloc.types import CovarianceType, GnssFix, diagonal_covariance

    return GnssFix(stamp_s, lat + rng.normal(0, 3e-5), lon + rng.normal(0, 4e-5), 60.0,
                   diagonal_covariance(3.0, 3.0, 6.0), CovarianceType.DIAGONAL_KNOWN)


class Soak:
    """The stream: frames at ``rate_hz``, a GNSS fix every ``gnss_every`` frames, virtual-time dropping."""

    def __init__(self, pipeline, logger, pool, rate_hz: float, gnss_every: int, sample_s: float) -> None:
        self.pipeline, self.logger, self.pool = pipeline, logger, pool
        self.rate_hz, self.gnss_every, self.sample_s = rate_hz, gnss_every, sample_s
        self.rng = np.random.default_rng(0)
        self.busy_until_s, self.next_sample_s = 0.0, 0.0
        self.frames = self.processed = self.dropped = 0
        self.compute_s: list[float] = []
        self.rss: list[tuple[float, float]] = []  # (virtual s, MiB)

    def run(self, duration_s: float) -> None:
        from edge_geoloc.types import CameraFrame

        for i in range(int(duration_s * self.rate_hz)):
            stamp = i / self.rate_hz
            image, lat, lon = self.pool[int(stamp / LOOP_PERIOD_S * len(self.pool)) % len(self.pool)]
            fix = gnss_fix(stamp, lat, lon, self.rng) if i % self.gnss_every == 0 else None
            if fix is not None:
                self.logger.log_gnss(fix)
            self.frames += 1
            if stamp < self.busy_until_s:  # still working on an earlier frame: this one is dropped
                self.dropped += 1
                if fix is not None:
                    self.pipeline.add_gnss(fix)
            else:
                self._process(CameraFrame(stamp, image), fix)
            if stamp >= self.next_sample_s:
                self.rss.append((stamp, rss_mib()))
                self.next_sample_s += self.sample_s

    def _process(self, frame, fix) -> None:
        start = time.perf_counter()
        state = self.pipeline.process(frame, fix)
        self.logger.log_frame(frame)
        self.logger.log_fused(state)
        cost = time.perf_counter() - start
        self.busy_until_s = frame.stamp_s + cost
        self.processed += 1
        self.compute_s.append(cost)


def rss_growth(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Median RSS of the last tenth vs the second tenth of the run (the first tenth is warm-up)."""
    mib = np.array([m for _, m in samples])
    tenth = max(1, len(mib) // 10)
    baseline, final = float(np.median(mib[tenth:2 * tenth])), float(np.median(mib[-tenth:]))
    slope = float(np.polyfit([t for t, _ in samples[tenth:]], mib[tenth:], 1)[0] * 60) if len(mib) > tenth + 2 else 0.0
    return {"baseline_mib": baseline, "final_mib": final, "growth_pct": 100.0 * (final - baseline) / baseline,
            "slope_mib_per_virtual_min": slope, "peak_mib": float(mib.max())}


def build_runtime(args: argparse.Namespace, work: Path):
    from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger
    from edge_geoloc.runtime.backends import load_backend
    from edge_geoloc.runtime.config import PipelineConfig, RuntimeConfig, TileIndexConfig
    from edge_geoloc.runtime.pipeline import BackendEncoder, BackendLocalizer, Pipeline
    from edge_geoloc.runtime.tile_build import build_tile_index

    retrieval, localizer, _ = export_models(args.retrieval, args.localizer, work / "models")
    backends = {k: load_backend(p, kind="onnxruntime", num_threads=args.threads)
                for k, p in (("retrieval", retrieval), ("localizer", localizer))}
    cfg = RuntimeConfig(index=TileIndexConfig(tile_size_m=120.0, stride_m=60.0),
                        pipeline=PipelineConfig(top_k=5, localize_top=1, min_confidence=0.0))
    ortho = make_area(work, 1000.0)
    index = build_tile_index([ortho], BackendEncoder(backends["retrieval"]), cfg.index)
    pipeline = Pipeline(BackendEncoder(backends["retrieval"]), BackendLocalizer(backends["localizer"]), index, cfg)
    logger = FieldLogger(work / "fieldlog", FieldLogConfig(min_free_bytes=64 * 2**20))
    return pipeline, logger, frame_pool(ortho, 240, cfg.index.tile_size_m), backends


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=600.0, help="virtual seconds of input (default 10 min)")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera frame rate")
    parser.add_argument("--gnss-every", type=int, default=3, help="a GNSS fix every N frames (3: 10 Hz at 30 Hz)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period, virtual seconds")
    parser.add_argument("--retrieval", default="cspdh_mobilenetv3_small")
    parser.add_argument("--localizer", default="ccvpe_drone_tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edge_geoloc_bench_soak")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    pipeline, logger, pool, backends = build_runtime(args, args.work)
    soak = Soak(pipeline, logger, pool, args.rate_hz, args.gnss_every, args.sample_s)
    wall = time.perf_counter()
    soak.run(args.duration_s)
    wall = time.perf_counter() - wall
    logger.close()
    for backend in backends.values():
        backend.close()
    growth = rss_growth(soak.rss)
    compute_ms = 1e3 * np.array(soak.compute_s)
    result = {
        "benchmark": "soak", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, {args.threads} "
                   f"ORT thread(s), load average {os.getloadavg()[0]:.1f} at the end",
        "models": {"retrieval": args.retrieval, "localizer": args.localizer, "weights": "untrained"},
        "virtual_duration_s": args.duration_s, "rate_hz": args.rate_hz, "wall_s": wall,
        "speed_vs_real_time": args.duration_s / wall,
        "frames": soak.frames, "processed": soak.processed, "dropped": soak.dropped,
        "drop_fraction": soak.dropped / max(1, soak.frames),
        "frame_ms": {"p50": float(np.percentile(compute_ms, 50)), "p90": float(np.percentile(compute_ms, 90)),
                     "max": float(compute_ms.max())},
        "pipeline_counters": asdict(pipeline.counters), "fieldlog_counters": asdict(logger.counters),
        "rss": growth, "rss_target_pct": 5.0, "rss_pass": growth["growth_pct"] < 5.0,
        "rss_curve": [[round(t, 1), round(m, 2)] for t, m in soak.rss],
    }
    print(f"{soak.frames} frames over {args.duration_s:.0f} virtual s in {wall:.0f} wall s "
          f"({result['speed_vs_real_time']:.2f}x real time); processed {soak.processed}, dropped {soak.dropped} "
          f"({100 * result['drop_fraction']:.1f} %); frame p50 {result['frame_ms']['p50']:.1f} ms")
    print(f"RSS {growth['baseline_mib']:.1f} -> {growth['final_mib']:.1f} MiB ({growth['growth_pct']:+.2f} %, "
          f"target < 5 %: {'PASS' if result['rss_pass'] else 'FAIL'}), slope "
          f"{growth['slope_mib_per_virtual_min']:+.3f} MiB/virtual min, peak {growth['peak_mib']:.1f} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
