"""CSP-HD ablation on a fixed synthetic benchmark: baseline, +HCD, +HCD+PALW, +CSDA, full CSP-HD.

Every variant gets the same data, steps, batch, seeds and initialisation (a cached synthetic pretrained
backbone, ``edge-geoloc pretrain``). Two protocols, kept apart:

- ``--protocol paper`` (default): the University-1652 layout written by ``edge_geoloc.sim`` (oblique orbit views,
  heading unknown), train and held-out test locations from one source-style area; ``cspdh_regnetx_002`` from its
  pretrained backbone.
- ``--protocol onboard``: frames north-up by the measured heading and cut to 80 m against 120 m map tiles, the
  trees of ``benchmarks/retrieval_onboard.py`` (training areas under random conditions; test: new source-style
  areas, map under ``summer_map``, flight under ``autumn_flight``: the map-vs-flight gap); ``cspdh_matcher``,
  whose backbone is the learned map matcher's feature network pretrained on on-board pairs
  (``edge-geoloc pretrain model=cspdh_matcher``). Adds R@1 "contains" (the top tile contains the point below
  the drone, what the localizer needs) beside R@1 of the nearest tile.

Reports R@1 and AP (mean and std over seeds) for drone->satellite and satellite->drone, the untrained model and
chance as floors, and each variant's paired difference to the baseline per seed; prints a table and writes
``benchmarks/results/retrieval_ablation_<protocol>.json`` after every run (a run cut short keeps its numbers).

    python benchmarks/retrieval_ablation.py --quick                  # a few minutes: 1 seed, short training
    python benchmarks/retrieval_ablation.py --protocol onboard       # 3 seeds x 5 variants (~15-20 min, one free core)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_geoloc.config import load_config
from edge_geoloc.data.folders import open_cross_view_folders
from edge_geoloc.data.poses import OnboardAlignment
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.train.pretrain import default_pretrain_config, pretrain_backbone
from edge_geoloc.train.retrieval_trainer import (
    RetrievalTrainConfig,
    RetrievalTrainer,
    drone_preparation,
    open_folders,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval_onboard  # noqa: E402  (the on-board trees and the "contains" score)

VARIANTS = {
    "baseline (InfoNCE)": ["loss.hcd.enabled=false", "loss.palw.enabled=false", "loss.csda.enabled=false"],
    "+HCD": ["loss.hcd.enabled=true", "loss.palw.enabled=false", "loss.csda.enabled=false"],
    "+HCD+PALW": ["loss.hcd.enabled=true", "loss.palw.enabled=true", "loss.csda.enabled=false"],
    "+CSDA": ["loss.hcd.enabled=false", "loss.palw.enabled=false", "loss.csda.enabled=true"],
    "CSP-HD (HCD+PALW+CSDA)": ["loss.hcd.enabled=true", "loss.palw.enabled=true", "loss.csda.enabled=true"],
}
KEYS = {"D2S": "drone_to_satellite/distractors", "S2D": "satellite_to_drone/distractors"}
CONTAINS = "drone_to_satellite/contains"  # on-board only: the top tile contains the point below the drone
SETTINGS = {
    "full": dict(seeds=(1, 2, 3), steps=60, img=64, batch=16, n_train=48, n_test=24, views=6, px=96),
    "quick": dict(seeds=(1,), steps=30, img=48, batch=12, n_train=24, n_test=12, views=4, px=48),
}
ONBOARD = {  # on-board protocol: training budget (the trees are retrieval_onboard.py's of the same setting)
    "full": dict(seeds=(1, 2, 3), steps=100, img=64, batch=32),
    "quick": dict(seeds=(1,), steps=15, img=64, batch=16),
}
MODELS = {  # protocol: (model overrides, pretraining config)
    "paper": (["model.name=cspdh_regnetx_002"], default_pretrain_config("cspdh_regnetx_002")),
    "onboard": (["model.name=cspdh_matcher", "model.num_stages=3", "run.eval_at_end=false"],
                default_pretrain_config("cspdh_matcher")),
}
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cspdh_onboard.yaml"
HALF_TILE_M = 60.0  # half of build-index's 120 m tile: "contains" tolerance


@dataclass(frozen=True)
class Bench:
    """What every run of one ablation shares."""

    protocol: str
    setting: dict
    train_root: Path
    test_root: Path  # the paper tree holds its own test split; on board, the held-out areas across the gap
    work: Path
    pretrained: str
    overrides: tuple[str, ...] = ()  # --set: extra config overrides for every run (recorded in the JSON)


def build_paper_tree(root: Path, s: dict) -> Path:
    """The University-1652-layout benchmark (cached in ``root``)."""
    from edge_geoloc.sim import generate_area, write_university_tree

    if (root / "test" / "gallery_satellite").is_dir():
        return root
    area = generate_area("source", seed=11, size_m=1000.0, gsd_m=1.0)
    write_university_tree(root, area, n_train=s["n_train"], n_test=s["n_test"], n_distractors=s["n_test"] // 2,
                          views_per_location=s["views"], drone_px=s["px"], satellite_px=s["px"],
                          satellite_size_m=120.0, alt_range_m=(60.0, 110.0), seed=0)
    return root


def onboard_trees(setting: str) -> tuple[Path, Path]:
    """(training tree, held-out test tree across the gap): retrieval_onboard.py's, cached in its work dir."""
    s, work = retrieval_onboard.SETTINGS[setting], Path("runs/retrieval_onboard") / setting
    areas = retrieval_onboard.test_areas("source", s)
    return retrieval_onboard.train_tree(work, s), retrieval_onboard.test_tree(work, "source_new_areas", s, areas)


def make_config(bench: Bench, out: Path, seed: int, variant: list[str]) -> RetrievalTrainConfig:
    s = bench.setting
    overrides = [f"data.root={bench.train_root}", f"data.protocol={bench.protocol}", f"model.img_size={s['img']}",
                 f"model.pretrained={bench.pretrained}", f"optim.batch_size={s['batch']}",
                 f"optim.max_steps={s['steps']}", f"run.seed={seed}", f"run.out_dir={out}", "run.progress=false",
                 "run.device=cpu", *MODELS[bench.protocol][0], *bench.overrides, *variant]
    if bench.protocol == "paper":  # heading unknown: the satellite side is rotated by multiples of 90 deg
        overrides.append("data.augment.rotate_satellite=true")
    return load_config(RetrievalTrainConfig, CONFIG, overrides)


def evaluate(bench: Bench, cfg: RetrievalTrainConfig, model: torch.nn.Module) -> dict[str, dict]:
    """Both directions on the test tree; on board also R@1 contains (the frames aligned as the runtime does)."""
    model.eval()
    if bench.protocol == "paper":
        return evaluate_folders(model, open_folders(cfg.data), prepare_drone=drone_preparation(cfg.data, model))
    align = OnboardAlignment(bench.test_root, cfg.data.query_ground_size_m, model.input_size[0])
    folders = open_cross_view_folders("synthetic", bench.test_root)
    out = evaluate_folders(model, folders, prepare_drone=align)
    with torch.no_grad():
        scores = retrieval_onboard.model_scores(model, bench.test_root, HALF_TILE_M)
    out[CONTAINS] = {"recall_at_1": scores["r1_contains"], "chance": scores["r1_contains_chance"]}
    return out


def columns(protocol: str) -> dict[str, tuple[str, str]]:
    """Table column -> (eval key, field)."""
    cols = {f"{d} {m}": (key, f) for d, key in KEYS.items() for m, f in (("R@1", "recall_at_1"), ("AP", "ap"))}
    if protocol == "onboard":
        cols["D2S R@1 contains"] = (CONTAINS, "recall_at_1")
    return cols


def summarise(runs: list[dict], protocol: str) -> dict[str, dict[str, float]]:
    out = {}
    for name, (key, field) in columns(protocol).items():
        values = [r["eval"][key][field] for r in runs]
        out[name] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def table(rows: dict[str, dict], protocol: str) -> str:
    cols = list(columns(protocol))
    lines = ["| variant | " + " | ".join(cols) + " | s/run |", "|---" * (len(cols) + 2) + "|"]
    for name, row in rows.items():
        cells = [f"{row['metrics'][c]['mean']:.1f} ± {row['metrics'][c]['std']:.1f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['seconds_per_run']:.0f} |")
    return "\n".join(lines)


def run_one(bench: Bench, name: str, seed: int) -> dict:
    cfg = make_config(bench, bench.work / f"{name.split()[0].strip('+()')}_{seed}", seed, VARIANTS[name])
    t0 = time.perf_counter()
    trainer = RetrievalTrainer(cfg)
    run = trainer.fit()
    run["eval"] = evaluate(bench, cfg, trainer.model)
    run["seconds"], run["seed"] = time.perf_counter() - t0, seed
    logging.info("%s seed %d: %s", name, seed, {k: round(v["mean"], 1) for k, v in
                                                summarise([run], bench.protocol).items() if "R@1" in k})
    return run


def variant_row(runs: list[dict], protocol: str) -> dict:
    return {"metrics": summarise(runs, protocol), "seconds_per_run": statistics.fmean(r["seconds"] for r in runs),
            "seeds_done": len(runs), "per_seed": [{"seed": r.get("seed"), **per_seed_scores(r, protocol)}
                                                  for r in runs]}


def per_seed_scores(run: dict, protocol: str) -> dict[str, dict]:
    out = {k: run["eval"][v] for k, v in KEYS.items()}
    if protocol == "onboard":
        out["contains"] = run["eval"][CONTAINS]
    return out


def untrained(bench: Bench) -> dict:
    """The pretrained backbone with fresh heads, before any fine-tuning (the floor every variant starts from)."""
    cfg = make_config(bench, bench.work / "untrained", bench.setting["seeds"][0], VARIANTS["baseline (InfoNCE)"])
    trainer = RetrievalTrainer(cfg)
    return variant_row([{"eval": evaluate(bench, cfg, trainer.model), "seconds": 0.0}], bench.protocol)


def chance(bench: Bench) -> dict[str, float]:
    """R@1 of a random ranking: positives / gallery size, averaged over queries (percent)."""
    from edge_geoloc.data.university import University1652

    out = {}
    for short, key in KEYS.items():
        query, gallery = University1652(bench.test_root).test_split(key.split("/")[0])
        counts = np.bincount(gallery.labels, minlength=len(gallery.class_names))
        out[short] = 100.0 * float(np.mean(counts[query.labels])) / len(gallery)
    return out


def paired_differences(rows: dict, per_seed_key: str = "D2S") -> dict[str, dict]:
    """Per variant: R@1 (``per_seed_key``: D2S, S2D or contains) minus the baseline's on the same seed, with mean
    and std over the shared seeds."""
    def r1(row: dict) -> dict[int, float]:
        return {r["seed"]: r[per_seed_key]["recall_at_1"] for r in row["per_seed"] if per_seed_key in r}

    base = r1(rows["baseline (InfoNCE)"])
    out = {}
    for name, row in rows.items():
        if name in ("untrained", "baseline (InfoNCE)"):
            continue
        diff = {seed: value - base[seed] for seed, value in r1(row).items() if seed in base}
        values = list(diff.values())
        out[name] = {"per_seed": diff, "mean": statistics.fmean(values) if values else float("nan"),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def make_bench(args: argparse.Namespace) -> Bench:
    setting = "quick" if args.quick else "full"
    s = dict((ONBOARD if args.protocol == "onboard" else SETTINGS)[setting])
    if args.seeds:
        s["seeds"] = tuple(int(v) for v in args.seeds.split(","))
    work = args.work_dir / f"{args.protocol}_{setting}"
    if args.protocol == "onboard":
        train_root, test_root = onboard_trees(setting)
    else:
        train_root = test_root = build_paper_tree(work / "data", s)
    pretrained = str(pretrain_backbone(MODELS[args.protocol][1]))
    return Bench(args.protocol, s, train_root, test_root, work, pretrained, tuple(args.set))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short training (a few minutes)")
    parser.add_argument("--protocol", choices=("paper", "onboard"), default="paper")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/retrieval_ablation"))
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/retrieval_ablation_<protocol>.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", help="comma-separated subset of the setting's seeds (run seeds in parallel "
                        "processes, each with its own --out, then --merge)")
    parser.add_argument("--variants", help="comma-separated subset of the variants by position (0 = baseline)")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides for every run (key=value)")
    parser.add_argument("--merge", nargs="+", type=Path, help="merge the JSON files of per-seed runs into --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("edge_geoloc.train.retrieval_trainer", "edge_geoloc.sim.datasets", "edge_geoloc.sim.area"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bench = make_bench(args)
    out = args.out or Path(__file__).parent / "results" / f"retrieval_ablation_{args.protocol}.json"
    if args.merge:
        floor, runs = merged_runs(args.merge, args.protocol)
        seeds = tuple(seed for f in args.merge for seed in json.loads(f.read_text())["settings"]["seeds"])
        bench = dataclasses.replace(bench, setting={**bench.setting, "seeds": seeds})
        rows = {"untrained": floor, **{n: variant_row(r, args.protocol) for n, r in runs.items()}}
        write_report(out, args, bench, rows, float("nan"))
        return
    names = list(VARIANTS)
    if args.variants:
        names = [names[int(i)] for i in args.variants.split(",")]
    floor = untrained(bench)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for seed in bench.setting["seeds"]:  # seed-major: a run cut short still has every variant for its seeds
        for name in names:
            runs[name].append(run_one(bench, name, seed))
            done = {n: variant_row(r, args.protocol) for n, r in runs.items() if r}
            write_report(out, args, bench, {"untrained": floor, **done}, time.perf_counter() - t0)


def merged_runs(files: list[Path], protocol: str) -> tuple[dict, dict[str, list[dict]]]:
    """(untrained row of the first file, per-variant runs of all files in file order)."""
    reports = [json.loads(f.read_text()) for f in files]
    keys = {**KEYS, "contains": CONTAINS} if protocol == "onboard" else KEYS
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for report in reports:
        for name in VARIANTS:
            row = report["rows"].get(name)
            for per_seed in row["per_seed"] if row else []:
                runs[name].append({"eval": {keys[k]: per_seed[k] for k in keys}, "seed": per_seed["seed"],
                                   "seconds": row["seconds_per_run"]})
    return reports[0]["rows"]["untrained"], {n: r for n, r in runs.items() if r}


def write_report(out: Path, args: argparse.Namespace, bench: Bench, rows: dict, seconds: float) -> None:
    text = table(rows, bench.protocol)
    levels = chance(bench)
    if bench.protocol == "onboard":
        levels["D2S contains"] = rows["untrained"]["per_seed"][0]["contains"]["chance"]
    diff_keys = ("D2S", "contains") if bench.protocol == "onboard" else ("D2S",)
    diffs = {k: paired_differences(rows, k) for k in diff_keys} if "baseline (InfoNCE)" in rows else {}
    print(text)
    print("chance R@1:", {k: round(v, 2) for k, v in levels.items()})
    for k, d in diffs.items():
        print(f"paired {k} R@1 difference to the baseline:", {n: round(v["mean"], 2) for n, v in d.items()})
    s = bench.setting
    result = {"benchmark": "retrieval_ablation", "retrieval_protocol": bench.protocol,
              "setting": "quick" if args.quick else "full", "settings": {**s, "seeds": list(s["seeds"])},
              "overrides": [*MODELS[bench.protocol][0], *bench.overrides],
              "pretrained_file": bench.pretrained, "train_tree": str(bench.train_root),
              "test_tree": str(bench.test_root), "ranking_protocol": "distractors (all gallery images ranked)",
              "untrained_floor": "pretrained backbone + fresh heads, first seed only", "chance_r1": levels,
              "paired_r1_difference": diffs, "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads (shared CPU)",
              "table_md": text, "total_seconds": seconds, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
