"""``edge-geoloc export``: checkpoint -> parity-gated ONNX (+ sidecar); ``export check``; ``export quantize``.

Examples::

    edge-geoloc export --checkpoint runs/retrieval/best.safetensors --format onnx --out models/retrieval.onnx
    edge-geoloc export --checkpoint runs/loc/best.safetensors --format onnx --finest-only --dynamic-batch
    edge-geoloc export --checkpoint CKPT --format onnx --int8 --calib synthetic     # + model.int8.onnx
    edge-geoloc export check models/retrieval.onnx                                  # TensorRT operator audit
    edge-geoloc export quantize models/retrieval.onnx --calib frames/ --target tensorrt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_geoloc.export.calibration import CalibrationError

from edge_geoloc.artifacts import ArtifactError
from edge_geoloc.config import ConfigError, add_config_arguments, load_config


def main(argv: list[str]) -> int:
    if argv and argv[0] == "check":
        return check_main(argv[1:])
    if argv and argv[0] == "quantize":
        return quantize_main(argv[1:])
    return export_main(argv)


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-geoloc export", description="Export a checkpoint to ONNX with a JSON "
                                "sidecar; the parity gate (ONNX Runtime vs PyTorch) runs by default. Subcommands: "
                                "`export check MODEL.onnx`, `export quantize MODEL.onnx`.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a .safetensors checkpoint from training")
    p.add_argument("--format", default="onnx", choices=["onnx", "engine"],
                   help="onnx (engines are built on the device with `edge-geoloc build-engine`)")
    p.add_argument("--out", type=Path, help="output .onnx (default: next to the checkpoint)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dim (default: static batch 1)")
    p.add_argument("--finest-only", action="store_true", help="localizer: export heatmap + orientation only")
    p.add_argument("--view", choices=["drone", "satellite"], help="retrieval branch to export (default drone)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim/onnxsim graph simplification")
    p.add_argument("--atol", type=float, help="parity gate absolute tolerance (default 1e-3)")
    p.add_argument("--rtol", type=float, help="parity gate relative tolerance (default 1e-3)")
    p.add_argument("--int8", action="store_true", help="also write MODEL.int8.onnx (ORT static QDQ)")
    p.add_argument("--calib", default="synthetic", help="calibration folder for --int8, or 'synthetic'")
    add_config_arguments(p)
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
    pairs = [("opset", args.opset), ("view", args.view), ("parity.atol", args.atol), ("parity.rtol", args.rtol)]
    out = [f"{k}={v}" for k, v in pairs if v is not None]
    out += [f"{k}=true" for k, flag in (("dynamic_batch", args.dynamic_batch), ("finest_only", args.finest_only))
            if flag]
    if args.no_simplify:
        out.append("simplify=false")
    return out + list(args.overrides) + list(args.extra_overrides)


def export_main(argv: list[str]) -> int:
    from edge_geoloc.export.config import ExportConfig
    from edge_geoloc.export.onnx_export import export_checkpoint
    from edge_geoloc.export.parity import ParityError

    args = _export_parser().parse_args(argv)
    if args.format == "engine":
        print("TensorRT engines are built on the target device: export ONNX here, then run "
              "`edge-geoloc build-engine MODEL.onnx --precision fp16` on the Jetson", file=sys.stderr)
        return 2
    try:
        cfg = load_config(ExportConfig, args.config, _overrides(args))
        out = args.out or args.checkpoint.with_suffix(".onnx")
        result = export_checkpoint(args.checkpoint, out, cfg)
    except (ConfigError, ArtifactError, ValueError) as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 2
    except ParityError as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    _print_parity(result.onnx_path, result.sidecar)
    if args.int8:
        return _quantize(result.onnx_path, args.calib, "onnxruntime", "minmax", 32, None)
    return 0


def _print_parity(path: Path, sidecar: dict) -> None:
    parity = sidecar["parity"]
    print(f"wrote {path} and {path.with_suffix('.json').name}; parity passed on {parity['samples']} samples "
          f"(task agreement {parity['task']['agreement']:.2f})")
    for name, err in parity["outputs"].items():
        print(f"  {name:<12} max abs {err['max_abs']:.3g}  max rel {err['max_rel']:.3g}")
    audit = sidecar.get("tensorrt_audit")
    if audit and not audit["ok"]:
        print(f"  warning: {len(audit['offenders'])} TensorRT offender(s); run `edge-geoloc export check {path}`")


def check_main(argv: list[str]) -> int:
    from edge_geoloc.export.trt_check import DEFAULT_TARGET, audit_onnx

    p = argparse.ArgumentParser(prog="edge-geoloc export check",
                                description="Static audit: operators and dtypes TensorRT's ONNX parser supports.")
    p.add_argument("onnx", type=Path)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--trt-version", default=DEFAULT_TARGET, help="TensorRT version the engine will be built "
                   f"with (default {DEFAULT_TARGET}: JetPack 6.1/6.2); opsets and operators are checked against it")
    args = p.parse_args(argv)
    try:
        report = audit_onnx(args.onnx, args.trt_version)
    except (ArtifactError, ValueError) as err:
        print(f"check failed: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


def quantize_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="edge-geoloc export quantize",
                                description="ONNX Runtime static QDQ int8 with calibration frames, task-gated.")
    p.add_argument("onnx", type=Path, help="an fp32 ONNX exported by `edge-geoloc export` (with its sidecar)")
    p.add_argument("--calib", default="synthetic", help="folder of frames (pairs dataset for localizers) or "
                   "'synthetic'")
    p.add_argument("--target", choices=["onnxruntime", "tensorrt"], default="onnxruntime",
                   help="onnxruntime: u8/s8 for CPUs; tensorrt: symmetric s8/s8 for strongly typed builds")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument("--images", type=int, default=32, help="number of calibration frames")
    p.add_argument("--out", type=Path, help="output path (default MODEL.int8.onnx)")
    args = p.parse_args(argv)
    return _quantize(args.onnx, args.calib, args.target, args.method, args.images, args.out)


def _quantize(onnx_path: Path, calib: str, target: str, method: str, images: int, out: Path | None) -> int:
    from edge_geoloc.export.calibration import calibration_feeds
    from edge_geoloc.export.config import QuantizeConfig
    from edge_geoloc.export.parity import ParityError
    from edge_geoloc.export.quantize import quantize_onnx
    from edge_geoloc.export.sidecar import read_sidecar

    try:
        feeds, source = calibration_feeds(read_sidecar(onnx_path), calib, images)
        path, sidecar = quantize_onnx(onnx_path, feeds, QuantizeConfig(target=target, method=method,
                                                                       calibration_images=images), out, source)
    except (ArtifactError, CalibrationError, ValueError) as err:
        print(f"quantize failed: {err}", file=sys.stderr)
        return 2
    except ParityError as err:
        print(f"quantize failed: {err}", file=sys.stderr)
        return 1
    task = sidecar["parity"]["task"]
    print(f"wrote {path} ({target} int8 QDQ, {len(feeds)} calibration frames from {calib}); task agreement "
          f"{task['agreement']:.2f}")
    return 0
