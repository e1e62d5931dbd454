"""CSP-HD ablation on a fixed synthetic benchmark: baseline, +HCD, +HCD+PALW, +CSDA, full CSP-HD.

Every variant gets the same data, steps, batch, seeds and initialisation (the cached synthetic pretrained
backbone, ``edge-geoloc pretrain``). ``--protocol paper`` (default): the University-1652 layout written by
``edge_geoloc.sim`` (oblique orbit views, heading unknown), train and held-out test locations from one
source-style area. ``--protocol onboard``: the on-board tree (north-up frames cut to 80 m against 120 m tiles,
held-out area). Reports R@1 and AP (mean and std over seeds) for drone->satellite and satellite->drone, the
untrained model and chance as floors, and each variant's paired difference to the baseline per seed; prints a
table and writes ``benchmarks/results/retrieval_ablation_<protocol>.json``.

    python benchmarks/retrieval_ablation.py --quick     # a few minutes: 1 seed, short training
    python benchmarks/retrieval_ablation.py             # 3 seeds x 5 variants (~20 min on one free core)
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

import numpy as np
import torch

from edge_geoloc.config import load_config
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.train.pretrain import PretrainConfig, pretrain_backbone
from edge_geoloc.train.retrieval_trainer import (
    RetrievalTrainConfig,
    RetrievalTrainer,
    drone_preparation,
    open_folders,
    train_retrieval,
)

VARIANTS = {
    "baseline (InfoNCE)": ["loss.hcd.enabled=false", "loss.palw.enabled=false", "loss.csda.enabled=false"],
    "+HCD": ["loss.hcd.enabled=true", "loss.palw.enabled=false", "loss.csda.enabled=false"],
    "+HCD+PALW": ["loss.hcd.enabled=true", "loss.palw.enabled=true", "loss.csda.enabled=false"],
    "+CSDA": ["loss.hcd.enabled=false", "loss.palw.enabled=false", "loss.csda.enabled=true"],
    "CSP-HD (HCD+PALW+CSDA)": ["loss.hcd.enabled=true", "loss.palw.enabled=true", "loss.csda.enabled=true"],
}
KEYS = {"D2S": "drone_to_satellite/distractors", "S2D": "satellite_to_drone/distractors"}
SETTINGS = {
    "full": dict(seeds=(1, 2, 3), steps=60, img=64, batch=16, n_train=48, n_test=24, views=6, px=96),
    "quick": dict(seeds=(1,), steps=30, img=48, batch=12, n_train=24, n_test=12, views=4, px=48),
}
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cspdh_onboard.yaml"


def build_tree(root: Path, s: dict, protocol: str) -> Path:
    """The synthetic benchmark (cached in ``root``)."""
    from edge_geoloc.sim import generate_area, write_university_tree
    from edge_geoloc.sim.onboard_tree import OnboardTreeConfig, write_onboard_tree

    if (root / "test" / "gallery_satellite").is_dir():
        return root
    if protocol == "onboard":
        train = [generate_area("source", seed=11 + i, size_m=420.0, gsd_m=1.0) for i in range(2)]
        test = [generate_area("source", seed=21, size_m=420.0, gsd_m=1.0)]
        cfg = OnboardTreeConfig(views_per_tile=s["views"] // 2, queries_per_area=s["n_test"] * 2, drone_px=s["px"],
                                tile_px=s["img"])
        return write_onboard_tree(root, train, test, cfg)
    area = generate_area("source", seed=11, size_m=1000.0, gsd_m=1.0)
    write_university_tree(root, area, n_train=s["n_train"], n_test=s["n_test"], n_distractors=s["n_test"] // 2,
                          views_per_location=s["views"], drone_px=s["px"], satellite_px=s["px"],
                          satellite_size_m=120.0, alt_range_m=(60.0, 110.0), seed=0)
    return root


def make_config(root: Path, out: Path, s: dict, seed: int, variant: list[str], protocol: str,
                pretrained: str) -> RetrievalTrainConfig:
    overrides = [f"data.root={root}", f"data.protocol={protocol}", f"model.img_size={s['img']}",
                 f"model.pretrained={pretrained}", f"optim.batch_size={s['batch']}", f"optim.max_steps={s['steps']}",
                 f"run.seed={seed}", f"run.out_dir={out}", "run.progress=false", "run.device=cpu", *variant]
    if protocol == "paper":  # heading unknown: the satellite side is rotated by multiples of 90 deg (Sample4Geo)
        overrides.append("data.augment.rotate_satellite=true")
    return load_config(RetrievalTrainConfig, CONFIG, overrides)


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


def run_one(root: Path, work: Path, s: dict, name: str, seed: int, protocol: str, pretrained: str) -> dict:
    cfg = make_config(root, work / f"{name.split()[0].strip('+()')}_{seed}", s, seed, VARIANTS[name], protocol,
                      pretrained)
    t0 = time.perf_counter()
    run = train_retrieval(cfg)
    run["seconds"], run["seed"] = time.perf_counter() - t0, seed
    logging.info("%s seed %d: %s", name, seed, {k: round(run["eval"][v]["recall_at_1"], 1) for k, v in KEYS.items()})
    return run


def variant_row(runs: list[dict]) -> dict:
    return {"metrics": summarise(runs), "seconds_per_run": statistics.fmean(r["seconds"] for r in runs),
            "seeds_done": len(runs),
            "per_seed": [{"seed": r.get("seed"), **{k: r["eval"][v] for k, v in KEYS.items()}} for r in runs]}


def untrained(root: Path, work: Path, s: dict, protocol: str, pretrained: str) -> dict:
    """The pretrained backbone with fresh heads, before any fine-tuning (the floor every variant starts from)."""
    cfg = make_config(root, work / "untrained", s, s["seeds"][0], VARIANTS["baseline (InfoNCE)"], protocol,
                      pretrained)
    trainer = RetrievalTrainer(cfg)
    prepare = drone_preparation(cfg.data, trainer.model)
    run = {"eval": evaluate_folders(trainer.model, open_folders(cfg.data), prepare_drone=prepare), "seconds": 0.0}
    return variant_row([run])


def chance(root: Path) -> dict[str, float]:
    """R@1 of a random ranking: positives / gallery size, averaged over queries (percent)."""
    from edge_geoloc.data.university import University1652

    out = {}
    for short, key in KEYS.items():
        query, gallery = University1652(root).test_split(key.split("/")[0])
        counts = np.bincount(gallery.labels, minlength=len(gallery.class_names))
        out[short] = 100.0 * float(np.mean(counts[query.labels])) / len(gallery)
    return out


def paired_differences(rows: dict) -> dict[str, dict]:
    """Per variant: D2S R@1 minus the baseline's on the same seed, with mean and std over the shared seeds."""
    base = {r["seed"]: r["D2S"]["recall_at_1"] for r in rows["baseline (InfoNCE)"]["per_seed"]}
    out = {}
    for name, row in rows.items():
        if name in ("untrained", "baseline (InfoNCE)"):
            continue
        diff = {r["seed"]: r["D2S"]["recall_at_1"] - base[r["seed"]] for r in row["per_seed"] if r["seed"] in base}
        values = list(diff.values())
        out[name] = {"per_seed": diff, "mean": statistics.fmean(values) if values else float("nan"),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short training (a few minutes)")
    parser.add_argument("--protocol", choices=("paper", "onboard"), default="paper")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/retrieval_ablation"))
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/retrieval_ablation_<protocol>.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", help="comma-separated subset of the setting's seeds (run seeds in parallel "
                        "processes, each with its own --out, then --merge)")
    parser.add_argument("--merge", nargs="+", type=Path, help="merge the JSON files of per-seed runs into --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("edge_geoloc.train.retrieval_trainer", "edge_geoloc.sim.datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    setting = "quick" if args.quick else "full"
    s = dict(SETTINGS[setting])
    if args.seeds:
        s["seeds"] = tuple(int(v) for v in args.seeds.split(","))
    work = args.work_dir / f"{args.protocol}_{setting}"
    root = build_tree(work / "data", s, args.protocol)
    t0 = time.perf_counter()
    pretrained = str(pretrain_backbone(PretrainConfig()))
    out = args.out or Path(__file__).parent / "results" / f"retrieval_ablation_{args.protocol}.json"
    if args.merge:
        floor, runs = merged_runs(args.merge)
        s["seeds"] = tuple(seed for f in args.merge for seed in json.loads(f.read_text())["settings"]["seeds"])
        rows = {"untrained": floor, **{n: variant_row(r) for n, r in runs.items()}}
        write_report(out, args, s, pretrained, root, rows, float("nan"))
        return
    floor = untrained(root, work, s, args.protocol, pretrained)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for seed in s["seeds"]:  # seed-major: a run cut short still has every variant for the seeds it finished
        for name in VARIANTS:
            runs[name].append(run_one(root, work, s, name, seed, args.protocol, pretrained))
            done = {n: variant_row(r) for n, r in runs.items() if r}
            write_report(out, args, s, pretrained, root, {"untrained": floor, **done}, time.perf_counter() - t0)


def merged_runs(files: list[Path]) -> tuple[dict, dict[str, list[dict]]]:
    """(untrained row of the first file, per-variant runs of all files in file order)."""
    reports = [json.loads(f.read_text()) for f in files]
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for report in reports:
        for name in VARIANTS:
            row = report["rows"].get(name)
            for per_seed in row["per_seed"] if row else []:
                runs[name].append({"eval": {KEYS[k]: per_seed[k] for k in KEYS}, "seed": per_seed["seed"],
                                   "seconds": row["seconds_per_run"]})
    return reports[0]["rows"]["untrained"], {n: r for n, r in runs.items() if r}


def write_report(out: Path, args: argparse.Namespace, s: dict, pretrained: str, root: Path, rows: dict,
                 seconds: float) -> None:
    text = table(rows)
    levels = chance(root)
    diffs = paired_differences(rows) if "baseline (InfoNCE)" in rows else {}
    print(text)
    print("chance R@1:", {k: round(v, 2) for k, v in levels.items()})
    print("paired D2S R@1 difference to the baseline:", {k: round(v["mean"], 2) for k, v in diffs.items()})
    result = {"benchmark": "retrieval_ablation", "retrieval_protocol": args.protocol,
              "setting": "quick" if args.quick else "full", "settings": {**s, "seeds": list(s["seeds"])},
              "pretrained_file": pretrained, "ranking_protocol": "distractors (all gallery images ranked)",
              "untrained_floor": "pretrained backbone + fresh heads, first seed only", "chance_r1": levels,
              "paired_d2s_r1_difference": diffs, "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads (shared CPU)",
              "table_md": text, "total_seconds": seconds, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
