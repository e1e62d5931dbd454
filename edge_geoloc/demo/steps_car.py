"""The car's loop (``edge-geoloc demo --vehicle car``): the demo's steps for a ground panorama in an urban drive.

The same run folder, cache, step runner, field logger, log dataset and report as the drone's; what differs is
the vehicle (docs/runtime.md, "Cars"): no retrieval, each frame is localized in the aerial patch around the
GNSS / fused prior by the ground localizer, and the visual fix goes through the same fusion.

The ground localizer is the classical BEV + NCC matcher (``runtime.classical_ground``): it needs no training and
the existing measurements give no learned localizer a fused advantage to pay a training step for
(README, "Cars": across the gap the learned BEV matcher's fused p95 is 28.93 m against BEV + NCC's 30.28 m with
the EKF and 10.49 m against 10.60 m with the particle filter, and it needs minutes of training on this CPU).
So step 2 trains nothing and step 3 exports
nothing; step 5 builds the adaptation dataset from the drive's logs (the loop runs) but adapts nothing, because
the localizer has no weights, and does not drive again with an unchanged localizer. The report says so.

2 train    nothing to train: the localizer's config is the step's artifact
3 export   the target map as the car's patch source (a tile index without retrieval embeddings)
4 fly      the urban drive (panorama, heading, GNSS with multipath) through the runtime, logged to MCAP;
           GNSS only vs fused, lateral / longitudinal, share of frames fused worse
5 adapt    dataset from the logs; the localizer on labelled target pairs beside the patch centre
6 report   the drone's report, with the car rows
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.config import save_config, to_dict
from edge_geoloc.data.ground_pairs import write_synthetic_ground_pairs
from edge_geoloc.demo.flight import read_flight
from edge_geoloc.demo.parts import cached_dataset, run_area
from edge_geoloc.demo.report import ReportInputs, build_report
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.demo.steps_fly import build_log_dataset, fly_logged, simulate_target_flight
from edge_geoloc.demo.steps_report import read_target_ortho, report_steps
from edge_geoloc.evaluate.car_metrics import centre_errors, drive_comparison, heatmap_errors, pair_error_stats
from edge_geoloc.fieldlog.step import MapPatchSpec
from edge_geoloc.geo import EnuFrame
from edge_geoloc.runtime.classical_ground import BevNccLocalizer
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.replay import FlightData
from edge_geoloc.runtime.tile_build import MapPatchesOnly, build_tile_index
from edge_geoloc.runtime.tile_index import TileIndex
from edge_geoloc.runtime.trajectory import read_trajectory

LOCALIZER = "classical_bev_ncc"
NOTHING_TO_ADAPT = ("not run: the classical BEV + NCC localizer has no weights to adapt; the logged pairs are "
                    "built and counted, and the unchanged localizer is not driven again")
EVAL_PAIRS_SEED_OFFSET = 3000


# ---------------------------------------------------------------- step 2: nothing to train
def step_car_localizer(ctx: StepContext) -> dict[str, Any]:
    """Write the ground localizer's config (the classical matcher trains nothing)."""
    save_config(ctx.config.ground_localizer, ctx.step_dir / "ground_localizer.yaml")
    return {"localizer": LOCALIZER, "trained": False, "config": to_dict(ctx.config.ground_localizer)}


# ---------------------------------------------------------------- step 3: the patch source
def step_car_index(ctx: StepContext) -> dict[str, Any]:
    """The target orthophoto as a tile index without retrieval embeddings: the runtime's patch source."""
    layout = ctx.layout
    index = build_tile_index([layout.ortho("target")], MapPatchesOnly(), ctx.config.runtime.index,
                             out_dir=layout.index_dir)
    return {"index": {"tiles": len(index), "embed_dim": int(index.embed_dim)}, "exported_models": []}


# ---------------------------------------------------------------- step 4: drive, logging
def car_pipeline(ctx: StepContext) -> Pipeline:
    """The car's runtime: no retrieval encoder, the ground localizer in the patch around the prior."""
    runtime = ctx.config.runtime
    index = TileIndex.load(ctx.layout.index_dir, runtime.index)
    return Pipeline(None, BevNccLocalizer(ctx.config.ground_localizer), index, runtime)


def car_patch_spec(ctx: StepContext) -> MapPatchSpec:
    """The map patch the field logger references: the ground localizer's patch at its matching resolution."""
    loc = ctx.config.ground_localizer
    return MapPatchSpec(ctx.layout.ortho("target"), float(loc.aerial_size_m), int(round(loc.aerial_size_m /
                                                                                         loc.m_per_px)))


def step_drive(ctx: StepContext) -> dict[str, Any]:
    """Drive the target area through the car's runtime with the field logger on; GNSS only vs fused."""
    area = run_area(ctx.layout, "target")
    flight = read_flight(simulate_target_flight(ctx, area))
    metrics = fly_logged(ctx, flight, car_pipeline(ctx), car_patch_spec(ctx))
    metrics["vehicle"] = "car"
    metrics["pipeline"] = {"retrieval": None, "localizer": LOCALIZER, "camera": "panorama", "alignment": "north_up",
                           "fusion": ctx.config.runtime.fusion.mode}
    metrics["drive"] = drive_errors(ctx.layout.teacher_replay / "trajectory.csv", flight)
    return metrics


def drive_errors(trajectory_csv: Path, flight: FlightData) -> dict[str, Any]:
    """GNSS only (last fix held) vs fused, with lateral / longitudinal errors along the true heading."""
    table = read_trajectory(trajectory_csv)
    if flight.truth is None or len(flight.truth["heading_rad"]) != len(table["stamp_s"]):
        raise ValueError(f"{trajectory_csv}: one trajectory row per frame with a true heading is needed")
    enu = EnuFrame(float(table["truth_lat_deg"][0]), float(table["truth_lon_deg"][0]))
    truth = np.column_stack(enu.to_enu(table["truth_lat_deg"], table["truth_lon_deg"])[:2])
    errors = {prefix: np.column_stack(enu.to_enu(table[f"{prefix}_lat_deg"], table[f"{prefix}_lon_deg"])[:2]) - truth
              for prefix in ("fused", "gnss_held")}
    return drive_comparison(errors["fused"], errors["gnss_held"], flight.truth["heading_rad"])


# ---------------------------------------------------------------- step 5: log dataset, labelled pairs
def step_car_adapt(ctx: StepContext) -> dict[str, Any]:
    """The adaptation dataset from the drive's logs; the localizer on labelled target pairs; no adaptation."""
    return {"dataset": build_log_dataset(ctx), "localizer_eval": ground_localizer_eval(ctx),
            "adaptation": {"ran": False, "why": NOTHING_TO_ADAPT}}


def ground_localizer_eval(ctx: StepContext) -> dict[str, Any]:
    """BEV + NCC vs the patch centre on labelled ground pairs of the target area (the same poses), seen as the
    drive sees it (across the gap) and as the map was taken (the easy row)."""
    conditions = dict.fromkeys((ctx.config.flight.condition, ctx.config.target_area.condition))
    return {str(condition): _pair_errors(ctx, condition) for condition in conditions}


def _pair_errors(ctx: StepContext, condition: str | None) -> dict[str, Any]:
    area = run_area(ctx.layout, "target")
    pairs = replace(ctx.config.ground_eval, condition=condition, random_conditions=0)
    seed = ctx.config.seed + EVAL_PAIRS_SEED_OFFSET
    params = {"area": area.metadata(), "seed": seed, **to_dict(pairs)}
    root = cached_dataset(ctx, f"ground_target_eval_{condition}", params,
                          lambda out: write_synthetic_ground_pairs(area, out, pairs, seed))
    loc = ctx.config.ground_localizer
    errors = heatmap_errors(root, lambda size_m: BevNccLocalizer(replace(loc, aerial_size_m=size_m)))
    return {LOCALIZER: pair_error_stats(errors), "patch_centre": pair_error_stats(centre_errors(root))}


# ---------------------------------------------------------------- step 6: report
def step_car_report(ctx: StepContext) -> dict[str, Any]:
    """The demo's report of the one drive, with the car's rows."""
    layout, drive, adapt = ctx.layout, ctx.metrics(4), ctx.metrics(5)
    ortho = read_target_ortho(layout)
    car = {**drive["drive"], "pipeline": drive["pipeline"], "ground_localizer": adapt["localizer_eval"],
           "adaptation": adapt["adaptation"], "dataset": adapt["dataset"]}
    inputs = ReportInputs(
        trajectories={"teacher": layout.teacher_replay / "trajectory.csv"},
        outages_s=[tuple(o) for o in drive.get("outages_s", [])],
        ortho_rgb=ortho.image, latlon_to_pixel=ortho.georef.latlon_to_pixel,
        metrics={"vehicle": "car", "car": car, "counters": {"teacher": drive.get("counters", {})}},
        steps=report_steps(ctx), title=ctx.config.report.title, dpi=ctx.config.report.dpi)
    summary = build_report(inputs, layout.report_dir)
    return {"flight": summary["flight"]["all"], "car": {k: car[k] for k in ("gnss_only", "fused", "share_fused_worse")}}
