"""Step 6: the report, made only from artifacts of the run (trajectory CSVs, heat-map samples, manifests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.demo.flight import HYPOTHESES_NAME
from edge_geoloc.demo.hypotheses import load_snapshots
from edge_geoloc.demo.layout import RunLayout
from edge_geoloc.demo.report import ReportInputs, build_report
from edge_geoloc.demo.runfolder import RUN_RECORD_NAME, step_dir_name
from edge_geoloc.demo.runner import StepContext
from edge_geoloc.geo import GeoRaster

MAX_MAP_PX = 2000  # the report's map: the whole target orthophoto, at most this many pixels a side


def step_report(ctx: StepContext) -> dict[str, Any]:
    """Write summary.json / summary.txt / PNGs / report.html into ``06_report``; return the headline numbers."""
    layout = ctx.layout
    ortho = read_target_ortho(layout)
    inputs = ReportInputs(
        trajectories={"teacher": layout.teacher_replay / "trajectory.csv",
                      "adapted": layout.adapted_replay / "trajectory.csv"},
        outages_s=[tuple(o) for o in ctx.metrics(4).get("outages_s", [])],
        ortho_rgb=ortho.image, latlon_to_pixel=ortho.georef.latlon_to_pixel,
        heatmap_samples=merge_heatmap_samples(layout.teacher_heatmaps, layout.adapted_heatmaps),
        hypotheses=_hypotheses(layout.teacher_replay / HYPOTHESES_NAME),
        metrics={**measured_metrics(ctx), "relocalization": ctx.metrics(4).get("relocalization", {})},
        steps=report_steps(ctx), title=ctx.config.report.title, dpi=ctx.config.report.dpi)
    summary = build_report(inputs, layout.report_dir)
    return {"flight": summary["flight"]["all"], "outage": summary["flight"]["outage"],
            "runtime": summary["flight"]["runtime"]}


def read_target_ortho(layout: RunLayout) -> Any:
    """The whole target orthophoto for the report's map (at most ``MAX_MAP_PX`` a side), with its georeference."""
    with GeoRaster(layout.ortho("target")) as raster:
        return raster.read_around_crs(*_centre(raster), _extent_m(raster), min(raster.georef.height_px, MAX_MAP_PX))


def _hypotheses(path: Path) -> list[dict[str, np.ndarray]]:
    return load_snapshots(path) if path.is_file() else []


def _centre(raster: Any) -> tuple[float, float]:
    left, bottom, right, top = raster.bounds_crs
    return 0.5 * (left + right), 0.5 * (bottom + top)


def _extent_m(raster: Any) -> float:
    left, bottom, right, top = raster.bounds_crs
    return max(right - left, top - bottom)


def merge_heatmap_samples(teacher_npz: Path, adapted_npz: Path) -> dict[str, np.ndarray]:
    """Shared inputs from the teacher file plus ``heatmap_/peak_px_/error_m_<model>`` of both."""
    with np.load(teacher_npz) as t, np.load(adapted_npz) as a:
        if not np.array_equal(t["frame_index"], a["frame_index"]):
            raise ValueError(f"{teacher_npz} and {adapted_npz} show different frames; re-run from step 5")
        merged = {k: t[k] for k in ("frame_index", "query", "aerial", "truth_px")}
        for name, src in (("teacher", t), ("adapted", a)):
            merged |= {f"heatmap_{name}": src["heatmap"], f"peak_px_{name}": src["peak_px"],
                       f"error_m_{name}": src["error_m"]}
    return merged


def measured_metrics(ctx: StepContext) -> dict[str, Any]:
    """Retrieval recall, localizer teacher-vs-adapted errors, adaptation and export facts from the manifests."""
    train, adapt = ctx.metrics(2), ctx.metrics(5)
    retrieval = train.get("retrieval", {})
    recall = {f"{k} ({where})": v for where in ("target", "source") for k, v in retrieval.get(where, {}).items()
              if k in ("recall_at_1", "chance_at_1")}
    matcher = {name: {"matcher": r["matcher"]["r1_contains"], "ncc": r["ncc"]["r1_contains"],
                      "chance": r["matcher"]["r1_contains_chance"], "queries": r["matcher"]["queries"]}
               for name, r in train.get("matcher", {}).items() if isinstance(r, dict) and "matcher" in r}
    return {"retrieval": recall, "onboard_retrieval": matcher, "localizer": adapt.get("localizer_eval", {}),
            "adaptation": adapt.get("adaptation", {}), "index": ctx.metrics(3).get("index", {}),
            "counters": {"teacher": ctx.metrics(4).get("counters", {}),
                         "adapted": adapt.get("flight", {}).get("counters", {})}}


def report_steps(ctx: StepContext) -> list[dict[str, Any]]:
    """Every step of the run: number, name, title, status, wall and CPU time, folder."""
    record = json.loads((ctx.run_dir / RUN_RECORD_NAME).read_text(encoding="utf-8"))
    status = {s["step"]: s["status"] for s in record["steps"]}
    titles = {s["step"]: s.get("title", s["name"]) for s in record["steps"]}
    return [{"step": n, "name": ctx.names[n], "title": titles.get(n, ctx.names[n]), "status": status.get(n, "ran"),
             "duration_s": m.duration_s,
             "cpu_s": m.cpu_s, "folder": step_dir_name(n, ctx.names[n])} for n, m in sorted(ctx.manifests.items())]
