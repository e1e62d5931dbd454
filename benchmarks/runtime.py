"""Runtime benchmark: per-stage and end-to-end latency of the pipeline, ONNX Runtime vs the PyTorch reference.

CPU-sized models from the registry (default ``cspdh_convnext_atto`` retrieval + ``ccvpe_drone_tiny`` localizer)
are exported to ONNX (untrained weights: latency does not depend on the values), an index is built over a
synthetic target-style area, and the same frames (nadir crops of the orthophoto) with GNSS go through
``Pipeline.process`` once per backend, side by side in one run. Threads: 2 (the target's CPU budget).
Target of issue 6: 10 Hz or better end to end with ONNX Runtime.

    python benchmarks/runtime.py            # 100 frames per backend
    python benchmarks/runtime.py --quick    # 20 frames per backend
    python benchmarks/runtime.py --models DIR   # use exported retrieval.onnx / localizer.onnx instead
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

STAGES = ("preprocess_ms", "retrieval_ms", "search_ms", "localizer_ms", "fusion_ms", "total_ms")


def export_models(retrieval_name: str, localizer_name: str, out: Path) -> tuple[Path, Path, dict]:
    """Export both registry models to ``out`` (skipped when already there); returns paths and the models."""
    from edge_geoloc.export.config import ExportConfig
    from edge_geoloc.export.onnx_export import export_model

    from edge_geoloc.models.registry import create_model

    models = {"retrieval": create_model(retrieval_name), "localizer": create_model(localizer_name)}
    for kind, model in models.items():
        if not (out / f"{kind}.onnx").is_file():
            export_model(model, out / f"{kind}.onnx", ExportConfig(check_tensorrt=False))
    return out / "retrieval.onnx", out / "localizer.onnx", models


def make_area(work: Path, size_m: float) -> Path:
    """The synthetic world's target-style area as a GeoTIFF."""
    from edge_geoloc.sim import generate_area

    area_dir = work / f"area_{size_m:.0f}m"
    if not (area_dir / "ortho.tif").is_file():
        generate_area("target", seed=0, size_m=size_m).save(area_dir)
    return area_dir / "ortho.tif"


def frames_and_fixes(ortho: Path, n: int, tile_m: float):
    """``n`` nadir crops along a diagonal with GNSS fixes 3 m off, 0.1 s apart (10 Hz camera)."""
    from edge_geoloc.geo import GeoRaster
    from edge_geoloc.types import CameraFrame, CovarianceType, GnssFix, diagonal_covariance

    rng = np.random.default_rng(0)
    out = []
    with GeoRaster(ortho) as raster:
        lat0, lon0 = raster.georef.pixel_to_latlon(raster.georef.height_px / 2, raster.georef.width_px / 2)
        for i in range(n):
            lat, lon = lat0 + 1e-5 * (i % 40 - 20), lon0 + 1.5e-5 * (i % 40 - 20)
            image = raster.read_around_latlon(lat, lon, 0.5 * tile_m, 256).image
            fix = GnssFix(0.1 * i, lat + rng.normal(0, 3e-5), lon + rng.normal(0, 4e-5), 60.0,
                          diagonal_covariance(3.0, 3.0, 6.0), CovarianceType.DIAGONAL_KNOWN)
            out.append((CameraFrame(0.1 * i, image), fix))
    return out


def run_backend(encoder, localizer, index, cfg, frames, warmup: int = 3) -> dict[str, dict[str, float]]:
    from edge_geoloc.runtime.pipeline import Pipeline

    pipe = Pipeline(encoder, localizer, index, cfg)
    for frame, fix in frames[:warmup]:
        pipe.process(frame, fix)
    pipe = Pipeline(encoder, localizer, index, cfg)
    encoder.backend.reset_latency()
    localizer.backend.reset_latency()
    lat = [asdict(pipe.process(frame, fix).latency) for frame, fix in frames]
    table = {s: np.array([x[s] for x in lat]) for s in STAGES}
    stats = {s: {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90))}
             for s, v in table.items()}
    stats["rate_hz"] = {"mean": 1000.0 / stats["total_ms"]["mean"]}
    stats["counters"] = asdict(pipe.counters)
    stats["model_only"] = {"retrieval": encoder.backend.latency_stats(), "localizer": localizer.backend.latency_stats()}
    return stats


def print_table(results: dict[str, dict]) -> None:
    names = list(results)
    print(f"{'stage (mean ms)':<16}" + "".join(f"{n:>14}" for n in names) + f"{'ratio':>8}")
    for s in STAGES:
        vals = [results[n][s]["mean"] for n in names]
        ratio = vals[-1] / vals[0] if vals[0] > 0 else float("nan")
        print(f"{s:<16}" + "".join(f"{v:>14.2f}" for v in vals) + f"{ratio:>7.1f}x")
    print(f"{'rate_hz':<16}" + "".join(f"{results[n]['rate_hz']['mean']:>14.1f}" for n in names))
    for model in ("retrieval", "localizer"):
        print(f"{model + ' run() ms':<16}" + "".join(f"{results[n]['model_only'][model]['mean_ms']:>14.2f}"
                                                    for n in names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", type=Path, help="folder with retrieval.onnx and localizer.onnx (+ sidecars)")
    parser.add_argument("--retrieval", default="cspdh_convnext_atto")
    parser.add_argument("--localizer", default="ccvpe_drone_tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edge_geoloc_bench_runtime")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "runtime.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from edge_geoloc.runtime.backends import load_backend
    from edge_geoloc.runtime.backends.torch_backend import TorchBackend
    from edge_geoloc.runtime.config import PipelineConfig, RuntimeConfig, TileIndexConfig
    from edge_geoloc.runtime.pipeline import BackendEncoder, BackendLocalizer
    from edge_geoloc.runtime.tile_build import build_tile_index

    args.work.mkdir(parents=True, exist_ok=True)
    if args.models:
        retrieval_path, localizer_path, models = args.models / "retrieval.onnx", args.models / "localizer.onnx", None
    else:
        retrieval_path, localizer_path, models = export_models(args.retrieval, args.localizer, args.work / "models")
    ort = {k: load_backend(p, kind="onnxruntime", num_threads=args.threads)
           for k, p in (("retrieval", retrieval_path), ("localizer", localizer_path))}
    cfg = RuntimeConfig(index=TileIndexConfig(tile_size_m=120.0, stride_m=60.0),
                        pipeline=PipelineConfig(top_k=5, localize_top=1, min_confidence=0.0))
    ortho = make_area(args.work, 600.0 if args.quick else 1000.0)
    start = time.perf_counter()
    index = build_tile_index([ortho], BackendEncoder(ort["retrieval"]), cfg.index)
    build_s = time.perf_counter() - start
    frames = frames_and_fixes(ortho, 20 if args.quick else 100, cfg.index.tile_size_m)
    results = {"onnxruntime": run_backend(BackendEncoder(ort["retrieval"]), BackendLocalizer(ort["localizer"]),
                                          index, cfg, frames)}
    if models is not None:
        torch_b = {k: TorchBackend.from_model(m) for k, m in models.items()}
        results["torch"] = run_backend(BackendEncoder(torch_b["retrieval"]), BackendLocalizer(torch_b["localizer"]),
                                       index, cfg, frames)
    print(f"index: {len(index)} tiles built in {build_s:.1f} s; {len(frames)} frames per backend, "
          f"{args.threads} threads")
    print_table(results)
    ok = results["onnxruntime"]["rate_hz"]["mean"] >= 10.0
    print(f"target 10 Hz end to end with ONNX Runtime: {'PASS' if ok else 'FAIL'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "runtime", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
                   f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} at the end",
        "models": {"retrieval": str(retrieval_path) if args.models else args.retrieval,
                   "localizer": str(localizer_path) if args.models else args.localizer,
                   "weights": "as exported" if args.models else "untrained (latency only)"},
        "index_tiles": len(index), "index_build_s": build_s, "frames": len(frames), "quick": args.quick,
        "results": results, "target_10hz": ok}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
