"""ROS interop benchmark: what the node's callbacks cost, and whether slow inference can block them.

Measures on this machine, side by side in one run:
1. per-message conversion time at camera size (640x480): raw Image rgb8/bgr8 -> RGB, CompressedImage JPEG
   decode, NavSatFix -> GnssFix, one result -> fix + pose + visual-fix messages, one DiagnosticArray;
2. the image callback's hand-over (``AsyncRunner.submit``) while a pipeline stand-in takes 100 ms per frame
   and frames arrive every 5 ms: callback time vs inference time, and frames dropped;
3. ``edge-geoloc replay-bag`` throughput (bag read + conversions + bag write) with a zero-cost pipeline.

    python benchmarks/ros_interop.py            # 200 repetitions, 120-frame bag
    python benchmarks/ros_interop.py --quick    # 30 repetitions, 30-frame bag
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from edge_geoloc.interop import (
    AsyncRunner,
    DiagnosticEntry,
    DiagnosticLevel,
    GeolocRunner,
    RosbagsFactory,
    diagnostics_to_msg,
    gnss_to_navsatfix,
    image_msg_to_frame,
    navsatfix_to_gnss,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)
from edge_geoloc.interop.outputs import state_to_messages
from edge_geoloc.interop.replay_bag import ReplayOptions, replay_bag
from edge_geoloc.interop.stamps import s_to_ns
from edge_geoloc.types import CameraFrame, FusedState, GnssFix, VisualFix

TS = get_typestore(Stores.ROS2_HUMBLE)
FACTORY = RosbagsFactory(TS)
T0 = 1_700_000_000.0


def camera_image(seed: int = 0) -> np.ndarray:
    """A 640x480 image with JPEG-realistic content (smooth gradients + texture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx * 0.3, yy * 0.4, (xx + yy) * 0.15], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def fused_state(stamp_s: float) -> FusedState:
    vf = VisualFix(stamp_s, 52.0, 4.36, 1.0, 2.0, (4.0, 0.0, 0.0, 4.0), 0.8, 2.0, 3, 0.9, 0.5)
    cov = (4.0, 0.5, 0.0, 0.5, 4.0, 0.0, 0.0, 0.0, 9.0)
    return FusedState(stamp_s, 52.0, 4.36, 40.0, 1.0, 2.0, 0.5, 0.0, cov, True, True, True, vf)


def time_ms(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.percentile(samples, 50)), "p90_ms": float(np.percentile(samples, 90))}


def conversion_costs(repeats: int) -> dict[str, dict[str, float]]:
    rgb = camera_image()
    raw_rgb = rgb_to_image_msg(FACTORY, rgb, T0, "cam", "rgb8")
    raw_bgr = rgb_to_image_msg(FACTORY, rgb, T0, "cam", "bgr8")
    jpeg = rgb_to_compressed_msg(FACTORY, rgb, T0, "cam", "jpeg", 90)
    fix = gnss_to_navsatfix(FACTORY, GnssFix(T0, 52.0, 4.36, 40.0))
    frame, state = CameraFrame(T0, rgb), fused_state(T0)
    entries = [DiagnosticEntry(f"edge_geoloc: {i}", DiagnosticLevel.OK, "ok", {f"k{j}": "1" for j in range(12)})
               for i in range(4)]
    return {
        "image_rgb8_640x480_to_frame": time_ms(lambda: image_msg_to_frame(raw_rgb), repeats),
        "image_bgr8_640x480_to_frame": time_ms(lambda: image_msg_to_frame(raw_bgr), repeats),
        "jpeg_640x480_decode_to_frame": time_ms(lambda: image_msg_to_frame(jpeg), repeats),
        "navsatfix_to_gnss": time_ms(lambda: navsatfix_to_gnss(fix), repeats),
        "result_to_fix_pose_visual_msgs": time_ms(lambda: state_to_messages(FACTORY, frame, state), repeats),
        "diagnostic_array_4x12": time_ms(lambda: diagnostics_to_msg(FACTORY, entries, T0), repeats),
    }


class SlowPipeline:
    def __init__(self, infer_s: float) -> None:
        self.infer_s, self.done = infer_s, threading.Event()

    def process(self, frame, gnss):
        self.done.wait(self.infer_s)  # stands in for inference: holds the worker, frees the CPU
        return fused_state(frame.stamp_s)


def callback_under_load(n_frames: int, infer_s: float = 0.1, period_s: float = 0.005) -> dict[str, float]:
    """Submit a frame every ``period_s`` while each inference takes ``infer_s``: callbacks must not wait."""
    msg = rgb_to_compressed_msg(FACTORY, camera_image(), T0, "cam", "jpeg", 90)
    results = []
    worker = AsyncRunner(GeolocRunner(SlowPipeline(infer_s)), lambda f, s: results.append(s.stamp_s),
                         prepare=image_msg_to_frame).start()
    submit_ms = []
    for i in range(n_frames):
        start = time.perf_counter()
        worker.submit(msg, T0 + i * period_s)
        submit_ms.append((time.perf_counter() - start) * 1e3)
        time.sleep(period_s)  # frame period of the simulated camera (benchmark only, not a test)
    worker.stop(timeout_s=10.0)
    counts = worker.counters.snapshot()
    return {"submit_p50_ms": float(np.percentile(submit_ms, 50)), "submit_max_ms": float(np.max(submit_ms)),
            "inference_ms": infer_s * 1e3, "frames": n_frames, "processed": counts["frames_processed"],
            "dropped": counts["frames_dropped"]}


def replay_throughput(n_frames: int, root: Path) -> dict[str, float]:
    with Writer(root / "in", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=TS)
        gps = writer.add_connection("/gnss/fix", "sensor_msgs/msg/NavSatFix", typestore=TS)
        for i in range(n_frames):
            t = T0 + 0.5 * i
            fix = gnss_to_navsatfix(FACTORY, GnssFix(t, 52.0, 4.36, 40.0))
            writer.write(gps, s_to_ns(t), TS.serialize_cdr(fix, fix.__msgtype__))
            img = rgb_to_compressed_msg(FACTORY, camera_image(i), t, "cam", "jpeg", 90)
            writer.write(cam, s_to_ns(t), TS.serialize_cdr(img, img.__msgtype__))
    pipeline = type("Instant", (), {"process": lambda self, f, g: fused_state(f.stamp_s)})()
    start = time.perf_counter()
    replay_bag(root / "in", root / "out", pipeline, ReplayOptions())
    seconds = time.perf_counter() - start
    return {"frames": n_frames, "seconds": seconds, "frames_per_s": n_frames / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ros_interop.json"))
    args = parser.parse_args()
    repeats, n_bag, n_load = (30, 30, 100) if args.quick else (200, 120, 400)
    conversions = conversion_costs(repeats)
    load = callback_under_load(n_load)
    with tempfile.TemporaryDirectory() as tmp:
        replay = replay_throughput(n_bag, Path(tmp))
    print(f"{'conversion (640x480 where an image)':<38}{'p50 ms':>9}{'p90 ms':>9}{'of 500 ms (2 Hz)':>18}")
    for name, t in conversions.items():
        print(f"{name:<38}{t['p50_ms']:>9.3f}{t['p90_ms']:>9.3f}{t['p50_ms'] / 500:>18.4f}")
    print(f"\ncallback hand-over while inference takes {load['inference_ms']:.0f} ms: p50 {load['submit_p50_ms']:.4f}"
          f" ms, max {load['submit_max_ms']:.3f} ms (ratio max/inference {load['submit_max_ms'] / 100:.4f}); "
          f"{load['processed']} of {load['frames']} frames processed, {load['dropped']} dropped")
    print(f"replay-bag: {replay['frames']} JPEG frames + fixes in {replay['seconds']:.2f} s "
          f"= {replay['frames_per_s']:.1f} frames/s with an instant pipeline")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
              "cpu_note": "2-core CPU shared with other jobs", "quick": args.quick, "conversions": conversions,
              "callback_under_load": load, "replay_bag": replay}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
