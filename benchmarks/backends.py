"""Backend benchmark: batch-1 latency of each exported model, PyTorch eager vs ONNX Runtime fp32 vs int8.

Per registered model (random weights: latency does not depend on training; pass ``--checkpoint`` files to
measure trained ones): export to ONNX through the parity gate, quantise to static QDQ int8 (synthetic
calibration frames, task-level gate), then time the three backends **interleaved** (one call of each per
round, so load on a shared machine hits all three alike) after a warm-up, on the same synthetic inputs.
Prints a markdown table of medians and ratios and writes ``benchmarks/results/backends.json``.

    python benchmarks/backends.py            # 6 models, 60 rounds
    python benchmarks/backends.py --quick    # 2 models, 20 rounds
    python benchmarks/backends.py --checkpoint runs/retrieval/best.safetensors runs/loc/best.safetensors
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
from typing import Any

import torch
from edge_geoloc.export.calibration import calibration_feeds
from edge_geoloc.export.config import ExportConfig, QuantizeConfig
from edge_geoloc.export.onnx_export import export_model
from edge_geoloc.export.parity import ParityError
from edge_geoloc.export.quantize import quantize_onnx
from edge_geoloc.export.samples import real_feeds

from edge_geoloc.models import create_model
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_geoloc.runtime.backends.torch_backend import TorchBackend

QUICK_MODELS = ("cspdh_convnext_atto", "ccvpe_drone_tiny")
FULL_MODELS = (*QUICK_MODELS, "cspdh_mobilenetv3_small", "cspdh_resnet18", "cspdh_efficientnet_b0",
               "ccvpe_drone_small")
RESULTS = Path(__file__).resolve().parent / "results" / "backends.json"


def interleaved_latency(backends: dict[str, Any], feeds: list[dict], rounds: int, warmup: int) -> dict[str, dict]:
    """Round-robin timing: each round runs every backend once on the same input."""
    for backend in backends.values():
        for i in range(warmup):
            backend.run(feeds[i % len(feeds)])
        backend.reset_latency()
    for r in range(rounds):
        for backend in backends.values():
            backend.run(feeds[r % len(feeds)])
    return {name: b.latency_stats() for name, b in backends.items()}


def bench_model(name: str, model: torch.nn.Module, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    fp32 = export_model(model, work / f"{name}.onnx", ExportConfig(simplify=True)).onnx_path
    export_s = time.perf_counter() - start
    calib, source = calibration_feeds(OnnxRuntimeBackend(fp32).sidecar, "synthetic", args.calib_images)
    row: dict[str, Any] = {"model": name, "export_s": round(export_s, 2), "fp32_mb": fp32.stat().st_size / 2**20}
    backends = {"torch": TorchBackend.from_model(model),
                "ort_fp32": OnnxRuntimeBackend(fp32, num_threads=args.threads)}
    try:
        int8, side = quantize_onnx(fp32, calib, QuantizeConfig(calibration_images=args.calib_images),
                                   calibration_id=source)
        backends["ort_int8"] = OnnxRuntimeBackend(int8, num_threads=args.threads)
        row.update(int8_mb=int8.stat().st_size / 2**20, int8_task_agreement=side["parity"]["task"]["agreement"])
    except ParityError as err:
        row.update(int8_failed=str(err), int8_task_agreement=err.report["task"]["agreement"])
    sidecar = backends["ort_fp32"].sidecar
    row["kind"] = sidecar["kind"]
    row["inputs"] = {t["name"]: t["shape"] for t in sidecar["inputs"]}
    stats = interleaved_latency(backends, real_feeds(sidecar, 4, seed=7), args.rounds, args.warmup)
    row["latency"] = stats
    for key in ("ort_fp32", "ort_int8"):
        if key in stats:
            row[f"speedup_{key}_vs_torch"] = stats["torch"]["p50_ms"] / stats[key]["p50_ms"]
    if "ort_int8" in stats:
        row["speedup_int8_vs_fp32"] = stats["ort_fp32"]["p50_ms"] / stats["ort_int8"]["p50_ms"]
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| model | kind | torch p50 ms | ORT fp32 p50 ms | ORT int8 p50 ms | torch/fp32 x | torch/int8 x | "
          "fp32/int8 x | int8 task agree | MB fp32 -> int8 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lat = r["latency"]
        i8 = lat.get("ort_int8", {}).get("p50_ms")
        nan = float("nan")
        print(f"| {r['model']} | {r['kind']} | {lat['torch']['p50_ms']:.2f} | {lat['ort_fp32']['p50_ms']:.2f} | "
              f"{i8 and f'{i8:.2f}' or 'gate failed'} | {r['speedup_ort_fp32_vs_torch']:.2f} | "
              f"{r.get('speedup_ort_int8_vs_torch', nan):.2f} | {r.get('speedup_int8_vs_fp32', nan):.2f} | "
              f"{r['int8_task_agreement']:.2f} | {r['fp32_mb']:.1f} -> {r.get('int8_mb', nan):.1f} |")


def models_to_run(args: argparse.Namespace) -> list[tuple[str, torch.nn.Module]]:
    if args.checkpoint:
        return [(Path(c).stem, load_model(c)[0]) for c in args.checkpoint]
    names = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    return [(n, create_model(n).eval()) for n in names]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 models, 20 rounds")
    p.add_argument("--models", nargs="*", help="registered model names (default sizes)")
    p.add_argument("--checkpoint", nargs="*", help="checkpoints to benchmark instead of random-weight models")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and ONNX Runtime (1: on a "
                   "shared, oversubscribed machine PyTorch's OpenMP pool collapses with more)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.rounds = args.rounds or (20 if args.quick else 60)
    torch.set_num_threads(args.threads)
    rows, load_start = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models_to_run(args):
            print(f"# {name} ...", flush=True)
            rows.append(bench_model(name, model, Path(tmp), args))
    print_table(rows)
    doc = {"benchmark": "backends", "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "load_avg_1_5_15min_start": list(load_start), "load_avg_1_5_15min_end": list(os.getloadavg())},
           "settings": {"rounds": args.rounds, "warmup": args.warmup, "calib_images": args.calib_images,
                        "quick": args.quick, "weights": "checkpoints" if args.checkpoint else "random init"},
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
