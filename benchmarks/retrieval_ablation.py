"""CSP-HD ablation on a fixed synthetic benchmark: baseline, +HCD, +HCD+PALW, +CSDA, full CSP-HD.

Every variant gets the same data, steps, batch and seeds; train locations and held-out test locations come
from one "source"-style area (the University-1652 layout written by ``edge_geoloc.sim``). Reports R@1 and AP
(mean and standard deviation over seeds) for drone->satellite and satellite->drone, with the untrained model
as a floor, prints a table and writes ``benchmarks/results/retrieval_ablation.json``.

    python benchmarks/retrieval_ablation.py --quick     # a few minutes: 1 seed, short training
    python benchmarks/retrieval_ablation.py             # ~30 min on 2 CPU cores: 3 seeds
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import torch

from edge_geoloc.config import load_config
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.train.retrieval_trainer import RetrievalTrainConfig, RetrievalTrainer, open_folders, train_retrieval

VARIANTS = {
    "baseline (InfoNCE)": ["loss.hcd.enabled=false", "loss.palw.enabled=false", "loss.csda.enabled=false"],
    "+HCD": ["loss.hcd.enabled=true", "loss.palw.enabled=false", "loss.csda.enabled=false"],
    "+HCD+PALW": ["loss.hcd.enabled=true", "loss.palw.enabled=true", "loss.csda.enabled=false"],
    "+CSDA": ["loss.hcd.enabled=false", "loss.palw.enabled=false", "loss.csda.enabled=true"],
    "CSP-HD (HCD+PALW+CSDA)": ["loss.hcd.enabled=true", "loss.palw.enabled=true", "loss.csda.enabled=true"],
}
KEYS = {"D2S": "drone_to_satellite/distractors", "S2D": "satellite_to_drone/distractors"}
SETTINGS = {
    "full": dict(seeds=(1, 2, 3), steps=150, img=64, batch=16, n_train=48, n_test=24, views=6, px=64),
    "quick": dict(seeds=(1,), steps=30, img=48, batch=12, n_train=24, n_test=12, views=4, px=48),
}


def build_tree(root: Path, s: dict) -> Path:
    """The synthetic benchmark (cached in ``root``): one 1 km source-style area, held-out test locations."""
    from edge_geoloc.sim import generate_area, write_university_tree

    if (root / "test" / "gallery_satellite").is_dir():
        return root
    area = generate_area("source", seed=11, size_m=1000.0, gsd_m=1.0)
    write_university_tree(root, area, n_train=s["n_train"], n_test=s["n_test"], n_distractors=s["n_test"] // 2,
                          views_per_location=s["views"], drone_px=s["px"], satellite_px=s["px"],
                          satellite_size_m=120.0, alt_range_m=(60.0, 110.0), seed=0)
    return root


def make_config(root: Path, out: Path, s: dict, seed: int, variant: list[str]) -> RetrievalTrainConfig:
    overrides = [f"data.root={root}", "data.num_workers=0", "model.name=cspdh_convnext_atto",
                 f"model.img_size={s['img']}", "model.embed_dim=64", f"optim.batch_size={s['batch']}",
                 "optim.epochs=1000",
                 f"optim.max_steps={s['steps']}", f"optim.warmup_steps={s['steps'] // 10}", "optim.lr=3e-4",
                 f"run.seed={seed}", f"run.out_dir={out}",
                 "run.progress=false", "run.log_every=10", "run.device=cpu", "run.multi_view=false", *variant]
    config = Path(__file__).resolve().parents[1] / "configs" / "cspdh_synthetic.yaml"
    return load_config(RetrievalTrainConfig, config, overrides)


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for short, key in KEYS.items():
        for metric, field in (("R@1", "recall_at_1"), ("AP", "ap")):
            values = [r["eval"][key][field] for r in runs]
            out[f"{short} {metric}"] = {"mean": statistics.fmean(values),
                                        "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def table(rows: dict[str, dict]) -> str:
    cols = [f"{d} {m}" for d in KEYS for m in ("R@1", "AP")]
    lines = ["| variant | " + " | ".join(cols) + " | s/run |", "|---" * (len(cols) + 2) + "|"]
    for name, row in rows.items():
        cells = [f"{row['metrics'][c]['mean']:.1f} ± {row['metrics'][c]['std']:.1f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['seconds_per_run']:.0f} |")
    return "\n".join(lines)


def run_variant(root: Path, work: Path, s: dict, name: str, overrides: list[str]) -> dict:
    runs, seconds = [], []
    for seed in s["seeds"]:
        cfg = make_config(root, work / f"{name.split()[0].strip('+()')}_{seed}", s, seed, overrides)
        t0 = time.perf_counter()
        runs.append(train_retrieval(cfg))
        seconds.append(time.perf_counter() - t0)
        logging.info("%s seed %d: %s", name, seed, {k: round(runs[-1]["eval"][v]["recall_at_1"], 1)
                                                    for k, v in KEYS.items()})
    return {"metrics": summarise(runs), "seconds_per_run": statistics.fmean(seconds),
            "per_seed": [{k: runs[i]["eval"][v] for k, v in KEYS.items()} for i in range(len(runs))]}


def untrained(root: Path, work: Path, s: dict) -> dict:
    runs = []
    for seed in s["seeds"]:
        cfg = make_config(root, work / "untrained", s, seed, VARIANTS["baseline (InfoNCE)"])
        runs.append({"eval": evaluate_folders(RetrievalTrainer(cfg).model, open_folders(cfg.data))})
    return {"metrics": summarise(runs), "seconds_per_run": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short training (a few minutes)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/retrieval_ablation"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "retrieval_ablation.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("edge_geoloc.train.retrieval_trainer", "edge_geoloc.sim.datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    setting = "quick" if args.quick else "full"
    s = SETTINGS[setting]
    work = args.work_dir / setting
    root = build_tree(work / "data", s)
    t0 = time.perf_counter()
    rows = {"untrained": untrained(root, work, s)}
    rows.update({name: run_variant(root, work, s, name, ov) for name, ov in VARIANTS.items()})
    text = table(rows)
    print(text)
    result = {"benchmark": "retrieval_ablation", "setting": setting, "settings": {**s, "seeds": list(s["seeds"])},
              "protocol": "distractors (all gallery images ranked)", "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "table_md": text,
              "total_seconds": time.perf_counter() - t0, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
