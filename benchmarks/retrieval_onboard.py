"""On-board retrieval: drone frame -> map tile R@1 on held-out areas, across the map-vs-flight gap, beside NCC.

The on-board protocol (docs/retrieval.md): frames rotated north-up by the measured heading (2 deg noise) and cut
to 80 m of ground from the measured height (1 m noise) and the FOV, exactly as the runtime does; the gallery is
every 120 m tile on build-index's 60 m grid of the test areas. Training: source-style areas whose map and flight
are rendered under random conditions. Test (never trained on): new source-style areas and target-style areas, the
map under ``summer_map`` and the flight under ``autumn_flight`` (the gap), plus the same source frames captured
under the map's own look (no gap). Two scores per query:

- ``R@1 nearest``: the top tile is the one nearest the point below the drone (one right answer);
- ``R@1 contains``: the top tile contains that point (what the localizer needs; 1-4 right answers).

Chance is given beside each (the expected score of a random ranking). The NCC baseline matches the same aligned
frames over each test area's whole map (best score over the areas) and is scored the same way through the tile
nearest its answer. Two models get the same budget: fine-tuned from the synthetic pretrained backbone
(``edge-geoloc pretrain``, cached) and from scratch. Writes ``benchmarks/results/retrieval_onboard.json``.

    python benchmarks/retrieval_onboard.py            # ~25 min on one free CPU core
    python benchmarks/retrieval_onboard.py --quick    # a few minutes, smaller everything
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edge_geoloc.config import load_config
from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.data.poses import OnboardAlignment, read_view_poses
from edge_geoloc.data.sampler import ImageListDataset
from edge_geoloc.data.university import University1652
from edge_geoloc.evaluate.retrieval_metrics import extract_features
from edge_geoloc.runtime.classical import NccConfig, NccMatcher
from edge_geoloc.runtime.map_search import tile_scores
from edge_geoloc.sim.area import Area, generate_area
from edge_geoloc.sim.conditions import sample_condition
from edge_geoloc.sim.onboard_tree import OnboardTreeConfig, write_onboard_tree
from edge_geoloc.train.map_matcher import (
    MatcherOptimConfig,
    MatcherRunConfig,
    MatcherTrainConfig,
    runtime_matcher,
    train_map_matcher,
)
from edge_geoloc.train.pretrain import ONBOARD_AUGMENT, PretrainConfig, pretrain_backbone
from edge_geoloc.train.retrieval_trainer import RetrievalTrainConfig, train_retrieval

MAP_CONDITION, FLIGHT_CONDITION = "summer_map", "autumn_flight"
QUERY_M = 80.0
SETTINGS = {
    "full": dict(train_areas=6, area_m=480.0, views=4, test_areas=2, queries=60, steps=120, batch=32, img=64),
    "quick": dict(train_areas=2, area_m=360.0, views=2, test_areas=1, queries=20, steps=40, batch=16, img=48),
}
TESTS = {  # name: (style, flight condition)
    "source_new_areas": ("source", FLIGHT_CONDITION),
    "source_new_areas_no_gap": ("source", None),
    "target_style": ("target", FLIGHT_CONDITION),
}
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cspdh_onboard.yaml"


def tree_cfg(s: dict, **kw) -> OnboardTreeConfig:
    return OnboardTreeConfig(views_per_tile=s["views"], queries_per_area=s["queries"], drone_px=96, tile_px=64, **kw)


def train_tree(work: Path, s: dict) -> Path:
    root = work / "train"
    if not (root / "poses.csv").is_file():
        rng = np.random.default_rng(3)
        areas = [generate_area("source", 300 + i, s["area_m"], 1.0, condition=sample_condition(rng, f"map{i}"))
                 for i in range(s["train_areas"])]
        write_onboard_tree(root, areas, [], tree_cfg(s, flight_condition="random"))
    return root


def test_areas(style: str, s: dict) -> list[Area]:
    base = 400 if style == "source" else 500
    return [generate_area(style, base + i, s["area_m"], 1.0, condition=MAP_CONDITION) for i in range(s["test_areas"])]


def test_tree(work: Path, name: str, s: dict, areas: list[Area]) -> Path:
    root = work / name
    if not (root / "poses.csv").is_file():
        write_onboard_tree(root, [], areas, tree_cfg(s, flight_condition=TESTS[name][1], seed=7))
    return root


def tile_table(root: Path) -> dict[str, tuple[int, float, float]]:
    """Gallery tile id -> (area seed, east, north), test areas only."""
    with (root / "locations.csv").open(newline="", encoding="utf-8") as f:
        return {r["id"]: (int(r["seed"]), float(r["east_m"]), float(r["north_m"])) for r in csv.DictReader(f)
                if r["split"] == "test"}


def query_truth(root: Path, paths, tiles: dict) -> list[tuple[int, float, float]]:
    """(area seed, east, north) of the point below the drone of each query (its label tile gives the area)."""
    poses = read_view_poses(root)
    out = []
    for p in paths:
        rel = Path(p).relative_to(root).as_posix()
        out.append((tiles[rel.split("/")[2]][0], poses[rel].east_m, poses[rel].north_m))
    return out


def contains(tile: tuple[int, float, float], truth: tuple[int, float, float], half_m: float) -> bool:
    return tile[0] == truth[0] and max(abs(tile[1] - truth[1]), abs(tile[2] - truth[2])) <= half_m


def score(top_ids: list[str], query_labels: list[str], truths: list, tiles: dict, half_m: float) -> dict:
    """R@1 nearest / contains of the top-1 tiles, with chance levels, in percent."""
    nearest = [t == q for t, q in zip(top_ids, query_labels, strict=True)]
    hit = [contains(tiles[t], truth, half_m) for t, truth in zip(top_ids, truths, strict=True)]
    covering = [sum(contains(tile, truth, half_m) for tile in tiles.values()) for truth in truths]
    n = len(tiles)
    return {"queries": len(truths), "gallery_tiles": n, "r1_nearest": 100 * float(np.mean(nearest)),
            "r1_nearest_chance": 100.0 / n, "r1_contains": 100 * float(np.mean(hit)),
            "r1_contains_chance": 100 * float(np.mean(covering)) / n}


def model_scores(model, root: Path, half_m: float) -> dict:
    query, gallery = University1652(root).test_split("drone_to_satellite")
    prep = (model.input_size, model.mean, model.std)
    align = OnboardAlignment(root, QUERY_M, model.input_size[0])
    qf, _ = extract_features(model, ImageListDataset(query, *prep, align), "drone")
    gf, gl = extract_features(model, ImageListDataset(gallery, *prep), "satellite")
    order = np.argsort(-(qf @ gf.T), axis=1)
    names = gallery.class_names
    top = [names[gl[o[0]]] for o in order]
    top5 = [[names[gl[i]] for i in o[:5]] for o in order]
    labels = [names[q] for q in query.labels]
    tiles = tile_table(root)
    tiles = {k: v for k, v in tiles.items() if k in set(names[g] for g in gl)}
    out = score(top, labels, query_truth(root, query.paths, tiles), tiles, half_m)
    out["r5_nearest"] = 100 * float(np.mean([q in t for q, t in zip(labels, top5, strict=True)]))
    return out


def ncc_scores(root: Path, areas: list[Area], half_m: float) -> dict:
    """NCC of the aligned frame (80 m at 2 m/px) over each test area's map; best score wins."""
    query, _ = University1652(root).test_split("drone_to_satellite")
    poses, tiles = read_view_poses(root), tile_table(root)
    matchers = {a.seed: NccMatcher(a.ortho, -a.size_m / 2, a.size_m / 2, a.gsd_m, NccConfig(QUERY_M, 2.0))
                for a in areas}
    top, started = [], time.perf_counter()
    for p in query.paths:
        pose = poses[Path(p).relative_to(root).as_posix()]
        frame = read_image_rgb(p)
        best = None
        for seed, m in matchers.items():
            match = m.locate(m.prepare(frame, pose.measured_heading_rad, pose.measured_alt_agl_m, pose.hfov_deg))
            if best is None or match.score > best[1].score:
                best = (seed, match)
        seed, match = best
        ids = [k for k, t in tiles.items() if t[0] == seed]
        top.append(min(ids, key=lambda k: max(abs(tiles[k][1] - match.east_m), abs(tiles[k][2] - match.north_m))))
    labels = [query.class_names[q] for q in query.labels]
    out = score(top, labels, query_truth(root, query.paths, tiles), tiles, half_m)
    out["ms_per_query"] = 1e3 * (time.perf_counter() - started) / max(1, len(top))
    return out


def finished_run(out: Path, cfg: RetrievalTrainConfig) -> bool:
    """``out`` holds a final checkpoint trained with exactly ``cfg``."""
    from edge_geoloc.config import read_yaml_mapping, to_dict

    saved = out / "config.yaml"
    return (out / "final.safetensors").is_file() and saved.is_file() and read_yaml_mapping(saved) == to_dict(cfg)


def train(tree: Path, out: Path, s: dict, pretrained: str | bool, seed: int = 1) -> tuple[object, dict]:
    from edge_geoloc.artifacts import load_checkpoint
    from edge_geoloc.models.registry import create_model

    overrides = [f"data.root={tree}", f"run.out_dir={out}", f"model.img_size={s['img']}",
                 f"model.pretrained={pretrained}", f"optim.batch_size={s['batch']}", f"optim.max_steps={s['steps']}",
                 f"run.seed={seed}", "run.eval_at_end=false", "run.progress=false", "run.device=cpu"]
    cfg = load_config(RetrievalTrainConfig, CONFIG, overrides)
    if cfg.data.augment != ONBOARD_AUGMENT:
        logging.warning("configs/cspdh_onboard.yaml augmentation differs from the pretraining one")
    started = time.perf_counter()
    if finished_run(out, cfg):  # the same config already trained to the end (e.g. started separately): reuse it
        summary, seconds = {"step": cfg.optim.max_steps}, float("nan")
    else:
        summary = train_retrieval(cfg)
        seconds = time.perf_counter() - started
    tensors, meta = load_checkpoint(out / "final.safetensors", expected_kind="retrieval")
    model = create_model(meta.model_name, **{**meta.model_kwargs, "pretrained": False})
    model.load_state_dict(tensors)
    curve = [(int(r["step"]), float(r["metric"])) for r in csv.DictReader((out / "metrics.csv").open())]
    return model.eval(), {"train_seconds": seconds, "steps": summary["step"], "learning_curve": curve,
                          "ln_batch": math.log(s["batch"])}


MATCHER = {  # learned map matcher: training budget and seeds per setting
    "full": dict(areas=40, steps=300, batch=32, validate_every=50, seeds=(1, 2, 3)),
    "quick": dict(areas=6, steps=40, batch=16, validate_every=20, seeds=(1,)),
}


def matcher_scores(model, root: Path, areas: list[Area], half_m: float) -> dict:
    """Each query ranks every tile of the test areas by the matcher's best score inside the tile's window
    (``map_search.tile_scores`` over each area's whole map); also the error of its whole-map best position."""
    query, _ = University1652(root).test_split("drone_to_satellite")
    poses, tiles = read_view_poses(root), tile_table(root)
    matchers = {a.seed: runtime_matcher(model, a.ortho, -a.size_m / 2, a.size_m / 2, a.gsd_m) for a in areas}
    ids = {seed: [k for k, t in tiles.items() if t[0] == seed] for seed in matchers}
    centres = {seed: np.array([tiles[k][1:] for k in ids[seed]]) for seed in matchers}
    top, errors, started = [], [], time.perf_counter()
    for p in query.paths:
        pose = poses[Path(p).relative_to(root).as_posix()]
        first = next(iter(matchers.values()))
        q = first.prepare(read_image_rgb(p), pose.measured_heading_rad, pose.measured_alt_agl_m, pose.hfov_deg)
        k = q.shape[-1]
        maps = {seed: m.score_map(q) for seed, m in matchers.items()}  # one correlation per area and query
        best = max(((float(s.max()), ids[seed][int(s.argmax())], seed) for seed, m in matchers.items()
                    for s in [tile_scores(m, maps[seed], k, centres[seed], model.search_radius_m)]),
                   key=lambda b: b[0])
        top.append(best[1])
        row, col = np.unravel_index(int(np.argmax(maps[best[2]])), maps[best[2]].shape)
        east, north = matchers[best[2]].window_centre_en(row, col, k)
        truth_seed = tiles[Path(p).parent.name][0]
        errors.append(math.hypot(east - pose.east_m, north - pose.north_m) if best[2] == truth_seed else math.inf)
    labels = [query.class_names[q] for q in query.labels]
    out = score(top, labels, query_truth(root, query.paths, tiles), tiles, half_m)
    out["ms_per_query"] = 1e3 * (time.perf_counter() - started) / max(1, len(top))
    finite = np.array(errors)
    out["global_within_10m"] = 100 * float(np.mean(finite < 10.0))
    out["global_within_25m"] = 100 * float(np.mean(finite < 25.0))  # the camera's tilt (up to 10 deg) shifts the
    # frame's centre up to 23 m from the point below the drone; the runtime has no attitude to undo it here
    out["global_median_error_m"] = float(np.median(finite))
    return out


def train_matcher(work: Path, setting: str, seed: int, areas: list[Area], root: Path, half_m: float):
    """Train (or reuse) one seed of the learned map matcher; the curve holds held-out R@1 contains."""
    from edge_geoloc.models.checkpoint import load_model
    from edge_geoloc.sim.onboard_pairs import OnboardPairConfig

    m = MATCHER[setting]
    out = work / f"matcher_s{seed}"
    cfg = MatcherTrainConfig(pairs=OnboardPairConfig(n_areas=m["areas"], area_size_m=SETTINGS[setting]["area_m"]),
                             optim=MatcherOptimConfig(batch_size=m["batch"], steps=m["steps"]),
                             run=MatcherRunConfig(out_dir=str(out), seed=seed, validate_every=m["validate_every"]))
    if finished_run(out, cfg):
        model, _ = load_model(out / "final.safetensors", expected_kind="matcher")
    else:
        def validate(model) -> dict[str, float]:
            return {"heldout_r1_contains": matcher_scores(model, root, areas, half_m)["r1_contains"]}
        model = train_map_matcher(cfg, validate)
    curve = [{k: float(v) for k, v in r.items()} for r in csv.DictReader((out / "metrics.csv").open())]
    return model, {"steps": m["steps"], "batch": m["batch"], "training_areas": m["areas"],
                   "train_seconds": curve[-1]["seconds"], "learning_curve": curve}


def summarize_seeds(per_seed: dict, ncc: dict) -> dict:
    """Mean, std and per-seed paired difference against NCC (same queries) of R@1 contains per test set."""
    out = {}
    for name in TESTS:
        values = np.array([r[name]["r1_contains"] for r in per_seed.values()])
        out[name] = {"r1_contains_mean": float(values.mean()), "r1_contains_std": float(values.std(ddof=1))
                     if len(values) > 1 else 0.0, "minus_ncc_per_seed": (values - ncc[name]["r1_contains"]).tolist(),
                     "r1_nearest_mean": float(np.mean([r[name]["r1_nearest"] for r in per_seed.values()])),
                     **{f"global_within_{d}m_mean": float(np.mean([r[name][f"global_within_{d}m"]
                                                                   for r in per_seed.values()])) for d in (10, 25)}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="matcher,global", help="comma list of matcher, global (the CSP-HD "
                        "descriptor models); parts not run keep their block from the previous JSON")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/retrieval_onboard"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "retrieval_onboard.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    setting = "quick" if args.quick else "full"
    parts = set(args.parts.split(","))
    s, work = SETTINGS[setting], args.work_dir / setting
    t0 = time.perf_counter()
    half = OnboardTreeConfig().tile_size_m / 2
    areas = {style: test_areas(style, s) for style in ("source", "target")}
    trees = {name: test_tree(work, name, s, areas[style]) for name, (style, _) in TESTS.items()}
    previous = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}
    results = {"ncc": {name: ncc_scores(root, areas[TESTS[name][0]], half) for name, root in trees.items()}}
    results.update({k: v for k, v in previous.items() if k in ("pretrained", "scratch") and "global" not in parts})
    report = {"benchmark": "retrieval_onboard", "setting": setting, "settings": s, "matcher_settings": MATCHER[setting],
              "query_ground_m": QUERY_M, "tile": {"size_m": 120.0, "stride_m": 60.0}, "map_condition": MAP_CONDITION,
              "flight_condition": FLIGHT_CONDITION, "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads (shared CPU)",
              "results": results}

    def write() -> None:
        report["total_seconds"] = time.perf_counter() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    if "matcher" in parts:
        per_seed = {}
        for seed in MATCHER[setting]["seeds"]:
            model, info = train_matcher(work, setting, seed, areas["source"], trees["source_new_areas"], half)
            per_seed[f"seed{seed}"] = {"training": info, **{name: matcher_scores(model, root, areas[TESTS[name][0]],
                                                                                 half) for name, root in trees.items()}}
            results["matcher"] = {"per_seed": per_seed, "summary": summarize_seeds(per_seed, results["ncc"])}
            logging.info("matcher seed %d: %s", seed, {k: round(v["r1_contains"], 1) for k, v in
                                                       per_seed[f"seed{seed}"].items() if k != "training"})
            write()
    if "global" in parts:
        pretrained = str(pretrain_backbone(PretrainConfig()))
        report["pretrained_file"] = pretrained
        tree = train_tree(work, s)
        for label, weights in (("pretrained", pretrained), ("scratch", False)):
            model, info = train(tree, work / f"run_{label}", s, weights)
            scores = {name: model_scores(model, root, half) for name, root in trees.items()}
            results[label] = {"training": info, **scores}
            write()
    write()
    print(table(report))
    print(f"wrote {args.out}")


def table(report: dict) -> str:
    r = report["results"]
    lines = ["| test set | NCC | learned map matcher (mean +- std, seeds) | CSP-HD descriptor scratch | pretrained | "
             "chance | matcher global fix within 10 m |", "|---|---|---|---|---|---|---|"]
    for name in TESTS:
        m = r.get("matcher", {}).get("summary", {}).get(name)
        matcher = f"{m['r1_contains_mean']:.1f} +- {m['r1_contains_std']:.1f}" if m else "not run"
        within = f"{m['global_within_10m_mean']:.1f}" if m else "-"
        scratch = r.get("scratch", {}).get(name, {}).get("r1_contains", float("nan"))
        pre = r.get("pretrained", {}).get(name, {}).get("r1_contains", float("nan"))
        lines.append(f"| {name} | {r['ncc'][name]['r1_contains']:.1f} | {matcher} | {scratch:.1f} | {pre:.1f} | "
                     f"{r['ncc'][name]['r1_contains_chance']:.1f} | {within} |")
    return "\n".join(lines) + "\n(R@1 contains, %: the top tile contains the point below the drone)"


if __name__ == "__main__":
    main()
