"""Ground localizer (cars) in new places, across the map-vs-drive gap, beside the patch-centre baseline.

Training: two areas (one per built-in style), ground views on their roads rendered under random conditions
(``sample_condition``; the built-in test conditions never appear), aerial patches from the map (``summer_map``)
around a coarse fix up to ``COARSE_M`` off. Test: two *new* areas of the same styles ("new cities of the
training styles"), ground views under ``autumn_flight`` (the gap) and ``summer_map`` (the easy row), the same
poses under both. Variants: ``pano_known`` (panorama rotated north-up by the heading), ``pano_unknown``
(panorama with unknown heading, 8 orientation bins), ``pinhole`` (front camera, 8 bins; lateral /
longitudinal errors along the heading, KITTI protocol). Baselines: the patch centre (the coarse fix) and,
for panoramas with known heading, the classical BEV + NCC matcher (``runtime.classical_ground``).

Learned BEV matcher (``--parts bev_matcher``): the learned map matcher (``models.map_matcher``) trained on BEVs of
panoramas rendered in 4 other areas of the source style only (``data.ground_bev_pairs``, random map and drive
conditions), run through the runtime's ``LearnedBevLocalizer`` in the same test patches; rows per test style
(source: new areas of the training style; target: the style never trained on) beside BEV + NCC and the patch
centre, per matcher seed, with the learning curve (median error on the source-style gap queries every
``validate_every`` steps; the last step is kept, no selection).

    python benchmarks/ground_localizer.py --quick                    # pano_known, 1 seed
    python benchmarks/ground_localizer.py --variants pano_known pano_unknown pinhole
    python benchmarks/ground_localizer.py --quick --parts bev_matcher   # keeps the JSON's CCVPE block

The trained checkpoint (``WORK/<variant>_s<seed>/last.safetensors``) is what ``benchmarks/car.py`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.data.ground_bev_pairs import GroundBevPairConfig, GroundBevPairSource, load_or_render_views
from edge_geoloc.data.ground_pairs import GroundPairConfig, write_synthetic_ground_pairs
from edge_geoloc.data.pairs import read_pairs
from edge_geoloc.evaluate.car_metrics import centre_errors, mode_errors
from edge_geoloc.evaluate.car_metrics import heatmap_errors as bev_errors
from edge_geoloc.evaluate.car_metrics import pair_error_stats as stats
from edge_geoloc.runtime.learned_ground import LearnedBevConfig, LearnedBevLocalizer
from edge_geoloc.sim.area import generate_area

MAP_CONDITION, GAP_CONDITION = "summer_map", "autumn_flight"
STYLES = ("source", "target")
AREA_M, GSD_M = 400.0, 0.5
AERIAL_M, AERIAL_PX, COARSE_M = 64.0, 64, 16.0
VARIANTS = {
    "pano_known": ("ccvpe_pano_micro", {}, "ground_pano"),
    "pano_unknown": ("ccvpe_pano_micro", {"num_orientations": 8, "query_alignment": "none"}, "ground_pano"),
    "pinhole": ("ccvpe_pinhole_micro", {}, "ground_pinhole"),
}


def train_area_seed(seed: int, k: int) -> int:
    return 500 + 10 * seed + k


def test_area_seed(seed: int, k: int) -> int:
    return 1000 + 10 * seed + k


def pair_config(kind: str, **overrides) -> GroundPairConfig:
    return GroundPairConfig(query_kind=kind, aerial_size_m=AERIAL_M, aerial_px=AERIAL_PX, coarse_error_m=COARSE_M,
                            **overrides)


def train_pairs(work: Path, seed: int, kind: str, count: int) -> list[Path]:
    roots = []
    for k, style in enumerate(STYLES):
        root = work / f"train_{kind}_{style}_s{seed}"
        if not (root / "dataset.json").is_file():
            area = generate_area(style, train_area_seed(seed, k), AREA_M, GSD_M, condition=MAP_CONDITION)
            write_synthetic_ground_pairs(area, root, pair_config(kind, count=count, random_conditions=8),
                                         seed=seed * 100 + k)
        roots.append(root)
    return roots


def test_pairs(work: Path, seed: int, kind: str, count: int) -> dict[str, list[Path]]:
    dirs: dict[str, list[Path]] = {}
    for k, style in enumerate(STYLES):
        area = None
        for capture in (GAP_CONDITION, MAP_CONDITION):
            root = work / f"test_{kind}_{style}_s{seed}_{capture}"
            if not (root / "dataset.json").is_file():
                area = area or generate_area(style, test_area_seed(seed, k), AREA_M, GSD_M, condition=MAP_CONDITION)
                write_synthetic_ground_pairs(area, root, pair_config(kind, count=count, condition=capture),
                                             seed=seed * 100 + 50 + k)
            dirs.setdefault(capture, []).append(root)
    return dirs


def train_model(work: Path, variant: str, seed: int, roots: list[Path], epochs: int):
    import torch

    from edge_geoloc.config import from_dict
    from edge_geoloc.data.pairs import dataset_for_model
    from edge_geoloc.models import create_model
    from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, fit

    name, kwargs, _ = VARIANTS[variant]
    align = kwargs.get("query_alignment", "north_up") == "north_up"
    model = create_model(name, **kwargs)
    parts = [dataset_for_model(r, model, read_ground_truth=True, align_north_up=align) for r in roots]
    train = torch.utils.data.ConcatDataset(parts)
    train.info = parts[0].info
    cfg = from_dict(LocalizerTrainConfig, {
        "model": {"name": name, "kwargs": kwargs}, "loss": {"sigma_px": 1.0, "infonce_weight": 10.0},
        "optim": {"lr": 1e-3, "epochs": epochs, "seed": seed}, "out_dir": str(work / f"{variant}_s{seed}"),
        "log_every": 0, "resume": False, "data": {"train": str(work), "batch_size": 16, "align_north_up": align}})
    return fit(cfg, train).eval(), align


def model_errors(model, root: Path, align: bool) -> tuple[np.ndarray, np.ndarray]:
    """(metres from the truth, predicted (row, col) in the dataset's aerial pixels) of the heat-map mode."""
    from torch.utils.data import DataLoader

    from edge_geoloc.data.pairs import dataset_for_model
    from edge_geoloc.evaluate.localization_metrics import predict

    dataset = dataset_for_model(root, model, read_ground_truth=True, align_north_up=align)
    rowcol = predict(model, DataLoader(dataset, batch_size=32, shuffle=False))["rowcol"]
    truth, m_per_px, _ = dataset.ground_truth()
    return np.linalg.norm(rowcol - truth, axis=1) * m_per_px, rowcol


def lateral_longitudinal(root: Path, rowcol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KITTI protocol: the error vector split along (longitudinal) and across (lateral) the true heading."""
    _, records = read_pairs(root, read_ground_truth=True)
    lat, lon = [], []
    for rec, (row, col) in zip(records, rowcol, strict=True):
        m = rec.aerial_georef.m_per_px
        d_east, d_north = (col - rec.gt_col) * m, -(row - rec.gt_row) * m
        h = rec.heading_rad
        lon.append(abs(d_east * math.sin(h) + d_north * math.cos(h)))
        lat.append(abs(d_east * math.cos(h) - d_north * math.sin(h)))
    return np.asarray(lat), np.asarray(lon)


def run_variant(work: Path, variant: str, seed: int, sizes: dict) -> dict:
    kind = VARIANTS[variant][2]
    started = time.perf_counter()
    model, align = train_model(work, variant, seed, train_pairs(work, seed, kind, sizes["train"]), sizes["epochs"])
    train_s = time.perf_counter() - started
    rows = {}
    for capture, roots in test_pairs(work, seed, kind, sizes["test"]).items():
        learned, rowcol = zip(*(model_errors(model, r, align) for r in roots), strict=True)
        row = {"learned": stats(np.concatenate(learned)),
               "patch_centre": stats(np.concatenate([centre_errors(r) for r in roots]))}
        if variant == "pano_known":
            row["classical_bev_ncc"] = stats(np.concatenate([bev_errors(r) for r in roots]))
        if kind == "ground_pinhole":
            lat, lon = zip(*(lateral_longitudinal(r, rc) for r, rc in zip(roots, rowcol, strict=True)), strict=True)
            row["learned_lateral"], row["learned_longitudinal"] = stats(np.concatenate(lat)), stats(np.concatenate(lon))
        rows[capture] = row
    return {"variant": variant, "seed": seed, "train_s": train_s, "checkpoint": str(work / f"{variant}_s{seed}"),
            "rows": rows}


def print_rows(result: dict) -> None:
    print(f"\n{result['variant']} seed {result['seed']} (trained {result['train_s']:.0f} s); mean / median / p95 m")
    for capture, row in result["rows"].items():
        cells = "  ".join(f"{name} {s['mean_m']:.2f} / {s['median_m']:.2f} / {s['p95_m']:.2f}"
                          for name, s in row.items())
        print(f"  {capture:<14} {cells}")


BEV_MATCHER = {  # training budget and seeds of the learned BEV matcher (position loss: where in the tile)
    "quick": dict(steps=300, batch=16, lr=2e-3, warmup=10, validate_every=50, seeds=(1,), position_weight=1.0),
    "full": dict(steps=600, batch=16, lr=2e-3, warmup=30, validate_every=100, seeds=(1, 2, 3), position_weight=1.0),
}
BEV_PAIRS = {  # source-style areas (seeds 3000..), 48 views each, 32 m BEV in 64 m tiles
    "quick": GroundBevPairConfig(n_areas=4),
    "full": GroundBevPairConfig(n_areas=8),
}


def bev_matcher_config(out: Path, seed: int, budget: dict, pairs: GroundBevPairConfig = BEV_PAIRS):
    from edge_geoloc.train.map_matcher import MatcherOptimConfig, MatcherRunConfig, MatcherTrainConfig

    kwargs = pairs.matcher_kwargs()
    optim = MatcherOptimConfig(batch_size=budget["batch"], steps=budget["steps"], lr=budget["lr"],
                               warmup_steps=budget["warmup"], position_weight=budget.get("position_weight", 0.0))
    run = MatcherRunConfig(out_dir=str(out), seed=seed, validate_every=budget["validate_every"])
    return MatcherTrainConfig(model_kwargs=kwargs, optim=optim, run=run)


HEADING_BINS = 36  # unknown heading: the learned BEV matcher searches 10 deg steps


def learned_bev_factory(model, heading_bins: int = 0):
    from edge_geoloc.train.map_matcher import feature_fn

    features, image = feature_fn(model), model.preprocessing()["image"]
    return lambda size_m: LearnedBevLocalizer(features, LearnedBevConfig.from_preprocessing(
        image, aerial_size_m=size_m, heading_bins=heading_bins))


def unknown_heading_row(root: Path, model) -> dict:
    """Position and heading errors of the learned BEV matcher on the panoramas as captured (no heading given)."""
    found = mode_errors(root, learned_bev_factory(model, HEADING_BINS), heading_known=False)
    return {"position": stats(found.distance_m), "heading_median_deg": float(np.median(found.heading_deg)),
            "heading_mean_deg": float(np.mean(found.heading_deg)),
            "heading_within_10deg": float(np.mean(found.heading_deg < 10))}


def pinhole_row(root: Path, model) -> dict:
    """The learned BEV matcher on front pinhole views (known heading): the camera's wedge of the panorama; KITTI's
    lateral / longitudinal split."""
    found = mode_errors(root, learned_bev_factory(model))
    return {"position": stats(found.distance_m), "lateral": stats(found.lateral_m),
            "longitudinal": stats(found.longitudinal_m)}


def same_config(path: Path, cfg) -> bool:
    """The saved config is ``cfg`` (fields added since with their defaults do not invalidate a cache)."""
    from edge_geoloc.config import from_dict, read_yaml_mapping, to_dict

    return to_dict(from_dict(type(cfg), read_yaml_mapping(path))) == to_dict(cfg)


def train_bev_matcher(work: Path, seed: int, budget: dict, heldout: Path, pairs: GroundBevPairConfig):
    """Train (or reuse, when the saved config matches) one seed; returns the model and its learning curve."""
    import csv

    from edge_geoloc.config import save_config
    from edge_geoloc.models.checkpoint import load_model
    from edge_geoloc.train.map_matcher import train_map_matcher

    weight = budget.get("position_weight", 0.0)
    wedge = f"_wedge{pairs.wedge_deg:g}" if pairs.wedge_deg else ""
    out = work / (f"bev_matcher{wedge}_s{seed}" if not weight else f"bev_matcher_pos{weight:g}{wedge}_s{seed}")
    cfg = bev_matcher_config(out, seed, budget, pairs)
    if ((out / "final.safetensors").is_file() and same_config(out / "config.yaml", cfg)
            and (out / "ground_bev_pairs.yaml").is_file()
            and same_config(out / "ground_bev_pairs.yaml", pairs)):
        model, _ = load_model(out / "final.safetensors", expected_kind="matcher")
    else:
        views = load_or_render_views(pairs, Path("runs/ground_bev_pairs"))
        shutil.rmtree(out, ignore_errors=True)  # metrics.csv appends: start a fresh curve

        def validate(model) -> dict[str, float]:
            return {"heldout_median_m": float(np.median(bev_errors(heldout, learned_bev_factory(model), 40)))}
        model = train_map_matcher(cfg, validate, GroundBevPairSource(views, pairs, seed=seed))
        save_config(pairs, out / "ground_bev_pairs.yaml")  # the pairs it saw (config.yaml's pairs are unused)
    curve = [{k: float(v) for k, v in r.items()} for r in csv.DictReader((out / "metrics.csv").open())]
    return model, {"train_s": curve[-1]["seconds"], "learning_curve": curve}  # loss per row, held-out where run


def run_bev_matcher(work: Path, setting: str, test_count: int, pairs: GroundBevPairConfig,
                    overrides: dict | None = None) -> dict:
    """Per matcher seed, per test condition and style: the learned BEV matcher beside BEV + NCC and the centre."""
    budget = BEV_MATCHER[setting] | (overrides or {})
    tests = test_pairs(work, 0, "ground_pano", test_count)  # {capture: [source root, target root]}
    pinhole_tests = test_pairs(work, 0, "ground_pinhole", test_count)
    baselines = {c: {s: {"classical_bev_ncc": stats(bev_errors(r)), "patch_centre": stats(centre_errors(r))}
                     for s, r in zip(STYLES, roots, strict=True)} for c, roots in tests.items()}
    pinhole_centre = {c: {s: stats(centre_errors(r)) for s, r in zip(STYLES, roots, strict=True)}
                      for c, roots in pinhole_tests.items()}
    per_seed = {}
    for seed in budget["seeds"]:
        model, info = train_bev_matcher(work, seed, budget, tests[GAP_CONDITION][0], pairs)
        rows = {c: {s: stats(bev_errors(r, learned_bev_factory(model))) for s, r in zip(STYLES, roots, strict=True)}
                for c, roots in tests.items()}
        unknown = {c: {s: unknown_heading_row(r, model) for s, r in zip(STYLES, roots, strict=True)}
                   for c, roots in tests.items()}
        pinhole = {c: {s: pinhole_row(r, model) for s, r in zip(STYLES, roots, strict=True)}
                   for c, roots in pinhole_tests.items()}
        per_seed[str(seed)] = {**info, "rows": rows, "unknown_heading": unknown, "pinhole": pinhole}
    summary = {c: {s: {"median_m_mean": float(np.mean([r["rows"][c][s]["median_m"] for r in per_seed.values()])),
                       "median_m_std": float(np.std([r["rows"][c][s]["median_m"] for r in per_seed.values()])),
                       "mean_m_mean": float(np.mean([r["rows"][c][s]["mean_m"] for r in per_seed.values()]))}
                   for s in STYLES} for c in tests}
    return {"budget": budget, "pairs": pairs.__dict__ | {"styles": list(pairs.styles)},
            "train_styles": list(pairs.styles), "test_seed": 0, "baselines": baselines,
            "pinhole_patch_centre": pinhole_centre, "heading_bins": HEADING_BINS, "per_seed": per_seed,
            "summary": summary}


def print_bev_matcher(block: dict) -> None:
    print("\nlearned BEV matcher (trained on source-style areas only); mean / median m, seeds "
          f"{list(block['per_seed'])}")
    for capture, styles in block["baselines"].items():
        for style, base in styles.items():
            learned = "  ".join(f"s{k} {r['rows'][capture][style]['mean_m']:.2f} / "
                                f"{r['rows'][capture][style]['median_m']:.2f}" for k, r in block["per_seed"].items())
            print(f"  {capture:<14} {style:<7} learned {learned}   BEV+NCC {base['classical_bev_ncc']['mean_m']:.2f} / "
                  f"{base['classical_bev_ncc']['median_m']:.2f}   centre {base['patch_centre']['mean_m']:.2f} / "
                  f"{base['patch_centre']['median_m']:.2f}")
    for capture, styles in block["baselines"].items():
        for style in styles:
            cells = "  ".join(f"s{k} {u['position']['mean_m']:.2f} / {u['position']['median_m']:.2f} m, heading "
                              f"median {u['heading_median_deg']:.1f} deg" for k, r in block["per_seed"].items()
                              if (u := r.get("unknown_heading", {}).get(capture, {}).get(style)))
            print(f"  {capture:<14} {style:<7} unknown heading {cells}")
    for capture, styles in block.get("pinhole_patch_centre", {}).items():
        for style, centre in styles.items():
            cells = "  ".join(f"s{k} {u['position']['mean_m']:.2f} / {u['position']['median_m']:.2f} m (lateral "
                              f"{u['lateral']['median_m']:.2f}, longitudinal {u['longitudinal']['median_m']:.2f})"
                              for k, r in block["per_seed"].items()
                              if (u := r.get("pinhole", {}).get(capture, {}).get(style)))
            print(f"  {capture:<14} {style:<7} pinhole {cells}   centre {centre['mean_m']:.2f} / "
                  f"{centre['median_m']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--parts", nargs="+", default=["ccvpe", "bev_matcher"], choices=["ccvpe", "bev_matcher"],
                        help="parts not run keep their block from the previous JSON at --out")
    parser.add_argument("--out", default="benchmarks/results/ground_localizer.json")
    parser.add_argument("--work", default="runs/bench_ground")
    parser.add_argument("--bev-areas", type=int, default=None, help="learned BEV matcher: training areas (profile's)")
    parser.add_argument("--bev-views", type=int, default=None, help="learned BEV matcher: panoramas per area (48)")
    parser.add_argument("--bev-steps", type=int, default=None, help="learned BEV matcher: steps (profile's)")
    parser.add_argument("--bev-wedge", type=float, default=None,
                        help="learned BEV matcher: train on wedges of this angle (a front pinhole camera's ground)")
    parser.add_argument("--bev-seeds", nargs="+", type=int, default=None, help="learned BEV matcher: seeds (profile's)")
    parser.add_argument("--bev-position-weight", type=float, default=None,
                        help="learned BEV matcher: weight of the position loss (profile's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    sizes = {"train": 600, "epochs": 6, "test": 60} if args.quick else {"train": 1500, "epochs": 10, "test": 100}
    variants = args.variants or (["pano_known"] if args.quick else list(VARIANTS))
    seeds = args.seeds or [0]
    work = Path(args.work) / ("quick" if args.quick else "full")
    started = time.perf_counter()
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    results = previous.get("results", [])
    if "ccvpe" in args.parts:
        results = []
        for variant in variants:
            for seed in seeds:
                results.append(run_variant(work, variant, seed, sizes))
                print_rows(results[-1])
    bev_block = previous.get("bev_matcher")
    if "bev_matcher" in args.parts:
        setting = "quick" if args.quick else "full"
        pairs = replace(BEV_PAIRS[setting], **{k: v for k, v in (("n_areas", args.bev_areas),
                                                         ("views_per_area", args.bev_views),
                                                         ("wedge_deg", args.bev_wedge)) if v})
        overrides = {k: v for k, v in (("steps", args.bev_steps), ("position_weight", args.bev_position_weight),
                                       ("seeds", tuple(args.bev_seeds) if args.bev_seeds else None))
                     if v is not None}
        bev_block = run_bev_matcher(work, setting, sizes["test"], pairs, overrides)
        bev_block["quick"], bev_block["wall_s"] = args.quick, time.perf_counter() - started
        print_bev_matcher(bev_block)
    report = {**previous, "benchmark": "ground_localizer", "results": results, "bev_matcher": bev_block,
              "aerial": {"size_m": AERIAL_M, "px": AERIAL_PX, "coarse_error_m": COARSE_M},
              "conditions": {"map": MAP_CONDITION, "gap": GAP_CONDITION},
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version()}
    if "ccvpe" in args.parts:
        report |= {"quick": args.quick, "sizes": sizes, "wall_s": time.perf_counter() - started}
    atomic_write_json(args.out, report)
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
