"""``edge-geoloc build-engine MODEL.onnx``: build a TensorRT engine on the target device.

Examples::

    edge-geoloc build-engine models/retrieval.onnx --precision fp16 --timing-cache models/timing.cache
    edge-geoloc build-engine models/retrieval.onnx --precision int8 --calib logs/frames/     # TensorRT 10
    edge-geoloc build-engine models/retrieval.int8.onnx --precision int8                  # Q/DQ (10 or 11)
    edge-geoloc build-engine models/loc.onnx --dry-run --trt-version 10.3                 # plan only, anywhere
    edge-geoloc build-engine models/matcher.onnx --precision fp16 --max-hw 1024,1024      # dynamic height/width
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_geoloc.artifacts import ArtifactError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-geoloc build-engine", description="Build a TensorRT 10/11 engine and "
                                "its manifest from an exported ONNX file (run on the device that will use it).")
    p.add_argument("onnx", type=Path)
    p.add_argument("--precision", choices=["fp32", "fp16", "int8", "best"], default="fp16")
    p.add_argument("--max-batch", type=int, default=1, help="largest batch (needs a --dynamic-batch export)")
    p.add_argument("--opt-batch", type=int, default=1, help="batch size TensorRT tunes for")
    p.add_argument("--min-hw", type=_hw, default=(32, 32), help="H,W: smallest input of a model with dynamic "
                   "height and width (the map matcher); default 32,32")
    p.add_argument("--opt-hw", type=_hw, help="H,W TensorRT tunes for (default: the size the sidecar records, "
                   "the camera frame)")
    p.add_argument("--max-hw", type=_hw, default=(1024, 1024), help="H,W: largest input (map blocks); default "
                   "1024,1024")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--optimization-level", type=int, default=3, help="builder optimisation level 0..5")
    p.add_argument("--timing-cache", type=Path, help="timing cache file, reused and updated across builds "
                   "(default: timing.cache next to the ONNX)")
    p.add_argument("--calib", help="INT8 calibration frames (folder, or 'synthetic') for TensorRT 10")
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--allow-tf32", action="store_true", help="fp32 builds: keep TensorRT's TF32 math (faster on "
                   "Ampere/Orin, ~1e-3 relative error); default off so fp32 engines match ONNX Runtime")
    p.add_argument("--strongly-typed", action="store_true", help="Q/DQ models on TensorRT 10: keep the ONNX's "
                   "types (non-quantised layers stay fp32) instead of allowing FP16 there")
    p.add_argument("--version-compatible", action="store_true", help="engine loadable by newer TensorRT runtimes")
    p.add_argument("--dla-core", type=int, default=-1, help="DLA core (Orin NX/AGX), -1 = GPU")
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine exists")
    p.add_argument("--out", type=Path, help="engine path (default MODEL.<precision>.engine)")
    p.add_argument("--dry-run", action="store_true", help="print the build plan without TensorRT")
    p.add_argument("--trt-version", default="10.3.0", help="TensorRT version assumed by --dry-run")
    return p


def _hw(text: str) -> tuple[int, int]:
    """``"256,192"`` (or ``256x192``) -> ``(256, 192)``."""
    parts = text.replace("x", ",").split(",")
    try:
        h, w = (int(p) for p in parts)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH such as 256,192, got {text!r}") from err
    return h, w


def _config(args: argparse.Namespace):
    from edge_geoloc.export.config import EngineConfig

    timing = args.timing_cache or args.onnx.with_name("timing.cache")
    return EngineConfig(precision=args.precision, max_batch=args.max_batch, opt_batch=args.opt_batch,
                        workspace_mb=args.workspace_mb, optimization_level=args.optimization_level,
                        timing_cache=timing, calibration_dir=Path(args.calib) if args.calib else None,
                        calibration_images=args.calib_images, allow_tf32=args.allow_tf32,
                        strongly_typed_qdq=args.strongly_typed, version_compatible=args.version_compatible,
                        dla_core=args.dla_core, force=args.force, min_hw=args.min_hw, opt_hw=args.opt_hw,
                        max_hw=args.max_hw)


def dry_run(onnx_path: Path, cfg, trt_version: str) -> dict:
    """The plan a build would follow, computed without TensorRT."""
    from edge_geoloc.export.sidecar import read_sidecar
    from edge_geoloc.export.tensorrt_build import (
        engine_path_for,
        input_profiles,
        onnx_has_qdq,
        plan_build,
        rebuild_command,
    )

    sidecar = read_sidecar(onnx_path)
    plan = plan_build(trt_version, cfg, onnx_has_qdq(onnx_path))
    return {"engine": str(engine_path_for(onnx_path, cfg.precision)), "tensorrt": trt_version,
            "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.builder_flags),
            "cleared_flags": list(plan.cleared_flags),
            "calibrator": plan.use_calibrator, "notes": list(plan.notes),
            "profiles": {k: [list(s) for s in v] for k, v in input_profiles(sidecar, cfg).items()},
            "rebuild_command": rebuild_command(onnx_path, cfg)}


def main(argv: list[str]) -> int:
    from edge_geoloc.export.tensorrt_build import EngineBuildError, build_engine

    args = _parser().parse_args(argv)
    try:
        cfg = _config(args)
        if args.dry_run:
            print(json.dumps(dry_run(args.onnx, cfg, args.trt_version), indent=2))
            return 0
        engine = build_engine(args.onnx, cfg, args.out)
    except ImportError as err:
        print(f"build-engine: {err}", file=sys.stderr)
        return 2
    except (ArtifactError, EngineBuildError, ValueError) as err:
        print(f"build-engine failed: {err}", file=sys.stderr)
        return 1
    print(f"engine {engine} with manifest {engine.with_suffix('.json').name}")
    return 0
