"""Area adaptation benchmark on the synthetic world: teacher vs self-distilled students on a new-style area.

A teacher is trained on drone pairs of a "source"-style area. A "target"-style area's pairs are split 70/10/20:
the 70% are written WITHOUT ground truth and adapted on; the 10% (validation) and 20% (test) are labelled and
only used to report errors. Rows (the paper's ablation): teacher; student without mode-based labels and
without filtering (plain self-distillation of the whole heat map); with mode-based labels (= the auxiliary
student); with both (the full method). Prints a table, writes JSON to benchmarks/results/adaptation.json.

    python benchmarks/adaptation.py --quick        # ~3-5 min on a shared 2-core CPU, 1 thread
    python benchmarks/adaptation.py                # ~15 min (not run)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edge_geoloc.artifacts import atomic_write_json  # noqa: E402
from edge_geoloc.config import from_dict  # noqa: E402
from edge_geoloc.data.pairs import (  # noqa: E402
    DronePairConfig,
    PairDataset,
    dataset_for_model,
    write_synthetic_drone_pairs,
)
from edge_geoloc.evaluate.localization_metrics import evaluate_dataset
from edge_geoloc.models import create_model  # noqa: E402
from edge_geoloc.sim import generate_area  # noqa: E402
from edge_geoloc.train.adaptation import AdaptConfig, adapt  # noqa: E402
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, fit  # noqa: E402

log = logging.getLogger("benchmarks.adaptation")

SIZES = {  # source train, source val, target total, teacher epochs, adaptation epochs, area size (m)
    "quick": dict(source=800, source_val=100, target=400, teacher_epochs=4, adapt_epochs=3, area_m=600.0),
    "full": dict(source=2000, source_val=200, target=1000, teacher_epochs=8, adapt_epochs=3, area_m=900.0),
}
MODEL = "xcorr_drone_micro"  # siamese cross-correlation; queries north-up and cut to 32 m at the patch's 1 m/px
DATA_VERSION = 2  # pairs record altitude_agl_m and hfov_deg (needed for the query's scale alignment)


def make_data(work: Path, size: dict, seed: int) -> dict[str, Path]:
    """Source train/val and target train (unlabeled) / val / test pair datasets from two sim areas."""
    pairs = DronePairConfig(aerial_px=64, query_px=64, photometric=False)
    source = generate_area("source", seed, size_m=size["area_m"])
    target = generate_area("target", seed + 1, size_m=size["area_m"])
    n_t = size["target"]
    n_train, n_val = int(0.7 * n_t), int(0.1 * n_t)
    plan = {"source_train": (source, size["source"], True), "source_val": (source, size["source_val"], True),
            "target_train": (target, n_train, False), "target_val": (target, n_val, True),
            "target_test": (target, n_t - n_train - n_val, True)}
    dirs = {}
    for i, (name, (area, count, labelled)) in enumerate(plan.items()):
        dirs[name] = work / f"{name}_v{DATA_VERSION}"
        if not (dirs[name] / "dataset.json").is_file():
            write_synthetic_drone_pairs(area, dirs[name], replace(pairs, count=count), seed=100 * seed + i,
                                        with_ground_truth=labelled)
    return dirs


def train_teacher(dirs: dict[str, Path], work: Path, epochs: int) -> torch.nn.Module:
    cfg = from_dict(LocalizerTrainConfig, {
        "model": {"name": MODEL}, "loss": {"sigma_px": 1.0, "infonce_weight": 1.0},
        "optim": {"lr": 1e-3, "epochs": epochs}, "out_dir": str(work / "teacher"), "log_every": 0, "resume": False,
        "data": {"train": str(dirs["source_train"]), "batch_size": 16}})
    model = fit(cfg, _labelled(dirs["source_train"]))
    return model.eval()


def _labelled(path: Path) -> PairDataset:
    return dataset_for_model(path, create_model(MODEL), read_ground_truth=True)


def evaluate_rows(models: dict[str, torch.nn.Module], dirs: dict[str, Path]) -> dict[str, dict]:
    sets = {name: _labelled(dirs[name]) for name in ("source_val", "target_val", "target_test")}
    rows = {}
    for row, model in models.items():
        rows[row] = {split: evaluate_dataset(model, ds) for split, ds in sets.items()}
        t = rows[row]["target_test"]
        log.info("%-34s target test mean %.2f m median %.2f m", row, t["mean_m"], t["median_m"])
    return rows


def run_adaptation(teacher: torch.nn.Module, dirs: dict[str, Path], work: Path, epochs: int):
    # all three correlation levels supervised (K' = 3; CCVPE's K' = 2 of 6 leaves the stride-2 level untouched)
    cfg = AdaptConfig(sigma_px=2.0, aux_epochs=epochs, student_epochs=epochs, lr=3e-4, supervised_levels=3)
    target = dataset_for_model(dirs["target_train"], teacher, read_ground_truth=False)  # + scale alignment
    plain = adapt(teacher, target, replace(cfg, mode_based_labels=False, filter_outliers=False), work / "plain")
    full = adapt(teacher, target, cfg, work / "full")
    models = {"teacher": teacher, "student: plain self-distillation": plain.student,
              "student: + mode-based labels": full.auxiliary, "student: + mode labels + filtering": full.student}
    return models, full.report


def centre_baseline(dirs: dict[str, Path]) -> dict[str, float]:
    """Mean/median error of always answering "the patch centre" (= the coarse fix): the bar a model must beat."""
    out = {}
    for split in ("source_val", "target_test"):
        rowcol, m_per_px, _ = _labelled(dirs[split]).ground_truth()
        d = np.linalg.norm(rowcol - 0.5 * _labelled(dirs[split]).aerial_size, axis=1) * m_per_px
        out[f"{split}_mean_m"], out[f"{split}_median_m"] = float(d.mean()), float(np.median(d))
    return out


def table(rows: dict[str, dict], baseline: dict[str, float]) -> str:
    teacher = rows["teacher"]["target_test"]["mean_m"]
    lines = ["| model | target test mean (m) | median (m) | R@5m | vs teacher | source val mean (m) |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        t = r["target_test"]
        change = 100.0 * (t["mean_m"] - teacher) / teacher
        lines.append(f"| {name} | {t['mean_m']:.2f} | {t['median_m']:.2f} | {t['recall_5m']:.2f} | {change:+.1f}% "
                     f"| {r['source_val']['mean_m']:.2f} |")
    lines.append(f"| (no model: patch centre = coarse fix) | {baseline['target_test_mean_m']:.2f} | "
                 f"{baseline['target_test_median_m']:.2f} | | | {baseline['source_val_mean_m']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", default="runs/bench_adaptation")
    parser.add_argument("--out", default="benchmarks/results/adaptation.json")
    parser.add_argument("--threads", type=int, default=1, help="1 avoids thread thrashing on a shared 2-core box")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    size, work, t0 = SIZES[mode], Path(args.work) / mode, time.monotonic()
    dirs = make_data(work, size, args.seed)
    t_data = time.monotonic() - t0
    teacher = train_teacher(dirs, work, size["teacher_epochs"])
    t_teacher = time.monotonic() - t0 - t_data
    models, report = run_adaptation(teacher, dirs, work, size["adapt_epochs"])
    rows = evaluate_rows(models, dirs)
    baseline = centre_baseline(dirs)
    result = {"benchmark": "adaptation", "mode": mode, "sizes": size, "seed": args.seed,
              "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()} {os.cpu_count()} CPU threads, torch {torch.__version__}, "
                         f"{args.threads} intra-op thread(s)",
              "seconds": {"data": round(t_data, 1), "teacher": round(t_teacher, 1),
                          "total": round(time.monotonic() - t0, 1)},
              "model": MODEL, "rows": rows, "baseline_patch_centre": baseline, "adaptation_report": report,
              "table_markdown": table(rows, baseline)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, json.loads(json.dumps(result, default=str)))
    print(table(rows, baseline))
    print(f"kept {report['kept']}/{report['samples']} target samples; total {result['seconds']['total']:.0f} s; "
          f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
