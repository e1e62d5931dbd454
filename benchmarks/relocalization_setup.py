"""Trained models, test areas and rendered flights for ``benchmarks/relocalization.py`` (cached).

Everything goes through the components' public APIs: the sim (areas, pair datasets, University-1652 trees,
flights), the localizer and retrieval trainers, the ONNX export (parity-gated) and the runtime's index build.
The models are trained on two areas (one per style); the flights fly over two other "target"-style areas that no
model saw. Across the realistic map-vs-flight gap (``edge_geoloc.sim.conditions``): every map is rendered under
``summer_map``, the flights under ``autumn_flight`` (another season, sun, sensor, some changed buildings), and
the localizer's training views under random conditions (never the test one). Each piece is cached under
``<cache>/<name>-<hash of its parameters>`` (``edge_geoloc.demo.cache``), so a second run only flies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_geoloc.config import deep_merge, from_dict
from edge_geoloc.demo.cache import cache_key, cached_build
from edge_geoloc.runtime.config import RuntimeConfig

log = logging.getLogger("benchmarks.relocalization")

AREA_M, GSD_M = 400.0, 0.5
MAP_CONDITION, FLIGHT_CONDITION = "summer_map", "autumn_flight"
TRAIN_AREAS = (("source", 0), ("target", 0))
TEST_AREAS = (("target", 1), ("target", 2))
VALIDATION_AREAS = (("target", 3), ("target", 4))  # settings are chosen here (flight seeds 100..), never on TEST_AREAS
LOCALIZER_PAIRS = {"count": 400, "aerial_size_m": 64.0, "aerial_px": 64, "query_px": 64, "alt_agl_m": [40.0, 50.0],
                   "coarse_error_m": 16.0, "margin_m": 40.0, "random_conditions": 8}
LOCALIZER_TRAIN = {"model": {"name": "xcorr_drone_micro"}, "loss": {"sigma_px": 1.0, "infonce_weight": 1.0},
                   "data": {"batch_size": 16, "align_north_up": True}, "optim": {"epochs": 4, "lr": 1.0e-3},
                   "log_every": 0, "device": "cpu", "resume": False}
RETRIEVAL_DATA = {"n_train": 40, "n_test": 16, "n_distractors": 4, "views_per_location": 4, "drone_px": 128,
                  "satellite_px": 128, "satellite_size_m": 64.0, "alt_range_m": (40.0, 55.0)}
RETRIEVAL_TRAIN = {"model": {"name": "cspdh_convnext_atto", "img_size": 64, "shared_weights": True},
                   "optim": {"batch_size": 16, "epochs": 3, "lr": 1.0e-3, "amp": False},
                   "run": {"log_every": 10, "eval_batch_size": 32, "multi_view": False, "seed": 0, "device": "cpu",
                           "resume": False, "progress": False}}
RUNTIME = {"index": {"tile_size_m": 64.0, "stride_m": 24.0, "tile_px": 128},
           "pipeline": {"aerial_size_m": 64.0, "top_k": 5, "localize_top": 5},
           "backend": {"kind": "onnxruntime", "device": "cpu", "warmup": 1}}
FLIGHT = {"kind": "drone", "speed_mps": 8.0, "altitude_agl_m": 45.0, "frame_rate_hz": 0.5, "width_px": 128,
          "height_px": 128, "photometric": True, "condition": FLIGHT_CONDITION}
# The learned map matcher for 45 m frames (docs/map_matcher.md): a 60 deg camera at 45 m covers ~52 m, a north-up
# square cut at any heading fits 32 m; 0.5 m/px; areas of both styles (as the other models), seeds 1000..1023,
# none of them a test area.
MATCHER_TRAIN = {
    "model": "map_matcher_micro",
    "model_kwargs": {"m_per_px": 0.5, "query_ground_size_m": 32.0, "tile_size_m": 64.0, "search_radius_m": 12.0},
    "pairs": {"styles": ["source", "target"], "n_areas": 24, "area_size_m": AREA_M, "gsd_m": GSD_M,
              "first_seed": 1000, "query_ground_size_m": 32.0, "tile_size_m": 64.0, "offset_m": 12.0,
              "height_m": 45.0, "min_spacing_m": 40.0},
    "optim": {"batch_size": 32, "steps": 1200, "warmup_steps": 20},  # 150 / 300 / 600 steps: top-5 32 / 46 / 54 %
    "run": {"seed": 1, "threads": 2, "log_every": 10}}
VERSION = "v2"  # bump when the sim or the trainers change what a cache entry would hold


@dataclass(frozen=True)
class Models:
    retrieval_onnx: Path
    localizer_onnx: Path
    localizer_checkpoint: Path
    train_metrics: dict[str, Any]


@dataclass(frozen=True)
class Matcher:
    onnx: Path
    metrics: dict[str, Any]


@dataclass(frozen=True)
class TestArea:
    name: str
    area_dir: Path
    index_dir: Path


def runtime_config(overrides: dict[str, Any] | None = None) -> RuntimeConfig:
    return from_dict(RuntimeConfig, deep_merge(RUNTIME, overrides or {}))


def _area(cache: Path, style: str, seed: int) -> Path:
    from edge_geoloc.sim import generate_area

    params = {"style": style, "seed": seed, "size_m": AREA_M, "gsd_m": GSD_M, "condition": MAP_CONDITION}
    entry, _ = cached_build(cache / "areas", cache_key(f"area-{style}{seed}", params, VERSION),
                            lambda d: generate_area(style, seed, AREA_M, GSD_M, condition=MAP_CONDITION).save(
                                d / "area"), params)
    return entry / "area"


def _train_localizer(area_dirs: list[Path], out: Path) -> dict[str, Any]:
    from torch.utils.data import ConcatDataset

    from edge_geoloc.data.pairs import DronePairConfig, dataset_for_model, write_synthetic_drone_pairs
    from edge_geoloc.evaluate.localization_metrics import evaluate_dataset
    from edge_geoloc.sim import load_area
    from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, build_model, fit

    pair_cfg = from_dict(DronePairConfig, LOCALIZER_PAIRS)
    val_cfg = from_dict(DronePairConfig, {**LOCALIZER_PAIRS, "count": 64, "random_conditions": 0,
                                          "condition": FLIGHT_CONDITION})
    for k, area_dir in enumerate(area_dirs):
        write_synthetic_drone_pairs(load_area(area_dir), out / f"pairs_train{k}", pair_cfg, seed=k)
    write_synthetic_drone_pairs(load_area(area_dirs[0]), out / "pairs_val", val_cfg, seed=1000)
    cfg = from_dict(LocalizerTrainConfig, deep_merge(LOCALIZER_TRAIN, {
        "data": {"format": "pairs", "train": str(out / "pairs_train0"), "val": str(out / "pairs_val")},
        "out_dir": str(out / "localizer")}))
    model = build_model(cfg.model)
    train = ConcatDataset([dataset_for_model(out / f"pairs_train{k}", model, read_ground_truth=True)
                           for k in range(len(area_dirs))])
    train.info = train.datasets[0].info  # what the trainer checks (query kind); both sets are drone pairs
    val = dataset_for_model(out / "pairs_val", model, read_ground_truth=True)
    sets = [train, val]
    model = fit(cfg, *sets).eval()
    return {k: float(v) for k, v in evaluate_dataset(model, sets[1]).items() if isinstance(v, (int, float))}


def _train_retrieval(area_dir: Path, out: Path) -> dict[str, Any]:
    from edge_geoloc.sim import load_area
    from edge_geoloc.sim.datasets import write_university_tree
    from edge_geoloc.train.retrieval_trainer import RetrievalTrainConfig, train_retrieval

    write_university_tree(out / "tree", load_area(area_dir), seed=0, **RETRIEVAL_DATA)
    cfg = from_dict(RetrievalTrainConfig, deep_merge(RETRIEVAL_TRAIN, {
        "data": {"dataset": "synthetic", "root": str(out / "tree"), "num_workers": 0},
        "run": {"out_dir": str(out / "retrieval")}}))
    results = train_retrieval(cfg)
    return {k: v for k, v in results.get("eval", {}).items() if k.startswith("drone_to_satellite")}


def _build_models(area_dirs: list[Path], out: Path) -> None:
    from edge_geoloc.export.config import ExportConfig
    from edge_geoloc.export.onnx_export import export_checkpoint

    from edge_geoloc.artifacts import atomic_write_json

    metrics = {"localizer_val_autumn_flight": _train_localizer(area_dirs, out),
               "retrieval_source": _train_retrieval(area_dirs[0], out)}
    export_checkpoint(out / "localizer" / "last.safetensors", out / "localizer.onnx", ExportConfig())
    export_checkpoint(out / "retrieval" / "final.safetensors", out / "retrieval.onnx", ExportConfig())
    atomic_write_json(out / "train_metrics.json", metrics)


def prepare_models(cache: Path) -> Models:
    """Train (once) the xcorr localizer and the retrieval model on the training area and export both."""
    import json

    area_dirs = [_area(cache, *a) for a in TRAIN_AREAS]
    params = {"areas": TRAIN_AREAS, "pairs": LOCALIZER_PAIRS, "localizer": LOCALIZER_TRAIN, "data": RETRIEVAL_DATA,
              "retrieval": RETRIEVAL_TRAIN, "map": MAP_CONDITION, "val": FLIGHT_CONDITION}
    entry, hit = cached_build(cache / "models", cache_key("models", params, VERSION),
                              lambda d: _build_models(area_dirs, d), params)
    log.info("models: %s (%s)", entry, "cached" if hit else "trained")
    metrics = json.loads((entry / "train_metrics.json").read_text())
    return Models(entry / "retrieval.onnx", entry / "localizer.onnx", entry / "localizer" / "last.safetensors",
                  metrics)


def _build_matcher(out: Path) -> None:
    import csv

    from edge_geoloc.export.config import ExportConfig
    from edge_geoloc.export.onnx_export import export_checkpoint

    from edge_geoloc.artifacts import atomic_write_json
    from edge_geoloc.train.map_matcher import MatcherTrainConfig, train_map_matcher

    cfg = from_dict(MatcherTrainConfig, deep_merge(MATCHER_TRAIN, {"run": {"out_dir": str(out / "matcher")}}))
    train_map_matcher(cfg)
    export_checkpoint(out / "matcher" / "final.safetensors", out / "matcher.onnx", ExportConfig())
    curve = list(csv.DictReader((out / "matcher" / "metrics.csv").open()))
    atomic_write_json(out / "train_metrics.json", {"steps": int(curve[-1]["step"]),
                                                   "train_seconds": float(curve[-1]["seconds"]),
                                                   "final_loss": float(curve[-1]["loss"])})


def prepare_matcher(cache: Path) -> Matcher:
    """Train (once) the learned map matcher for these flights' frames on its own synthetic areas (seeds from
    ``pairs.first_seed``, never the test areas) and export it (``global_search.kind: matcher``)."""
    import json

    pairs = MATCHER_TRAIN["pairs"]
    used = {(pairs["styles"][i % len(pairs["styles"])], pairs["first_seed"] + i) for i in range(pairs["n_areas"])}
    held_out = set(TEST_AREAS) | set(VALIDATION_AREAS)
    if used & held_out:
        raise ValueError(f"the map matcher would train on test or validation areas {sorted(used & held_out)}")
    entry, hit = cached_build(cache / "matchers", cache_key("matcher", MATCHER_TRAIN, VERSION), _build_matcher,
                              MATCHER_TRAIN)
    log.info("map matcher: %s (%s)", entry, "cached" if hit else "trained")
    return Matcher(entry / "matcher.onnx", json.loads((entry / "train_metrics.json").read_text()))


def prepare_test_areas(cache: Path, models: Models,
                       areas: tuple[tuple[str, int], ...] = TEST_AREAS) -> list[TestArea]:
    """The test areas (or ``VALIDATION_AREAS``: never trained on either) and their tile indexes embedded by the
    retrieval model."""
    from edge_geoloc.runtime.index_cli import build

    if set(areas) & set(TRAIN_AREAS):
        raise ValueError(f"areas {sorted(set(areas) & set(TRAIN_AREAS))} are training areas")
    out = []
    for style, seed in areas:
        area_dir = _area(cache, style, seed)
        params = {"area": [style, seed], "index": RUNTIME["index"], "model": str(models.retrieval_onnx)}
        entry, _ = cached_build(cache / "indexes", cache_key(f"index-{style}{seed}", params, VERSION),
                                lambda d, a=area_dir: build([a / "ortho.tif"], models.retrieval_onnx, d / "index",
                                                            runtime_config()), params)
        out.append(TestArea(f"{style}{seed}", area_dir, entry / "index"))
    return out


def prepare_flight(cache: Path, area: TestArea, seed: int, duration_s: float) -> Path:
    """One rendered flight over ``area`` (its own GNSS is ignored: the benchmark simulates each scenario's)."""
    from edge_geoloc.sim import load_area
    from edge_geoloc.sim.flight import FlightConfig, simulate_flight

    params = {"area": area.name, "seed": seed, "duration_s": duration_s, **FLIGHT}
    cfg = from_dict(FlightConfig, {**FLIGHT, "seed": seed, "duration_s": duration_s})
    entry, _ = cached_build(cache / "flights", cache_key(f"flight-{area.name}-{seed}", params, VERSION),
                            lambda d: simulate_flight(load_area(area.area_dir), d / "flight", cfg), params)
    return entry / "flight"
