"""The demo's report: measured numbers (``summary.json``), a terminal table, PNG figures and one HTML page.

Every number comes from an artifact of the run: flight errors are recomputed here from the trajectory CSVs the
flights wrote, the other numbers are read from the step manifests' measured metrics. The HTML page embeds the
PNGs as base64 so it can be mailed or opened anywhere on its own.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.demo import plots
from edge_geoloc.demo.runfolder import json_safe
from edge_geoloc.runtime.trajectory import error_stats, position_errors_m, read_trajectory

FLIGHTS = ("teacher", "adapted")  # the flight before and after adaptation


@dataclass(frozen=True)
class ReportInputs:
    """What the report is made from; ``trajectories`` maps ``teacher``/``adapted`` to trajectory CSVs."""

    trajectories: dict[str, Path]
    outages_s: Sequence[tuple[float, float]] = ()
    ortho_rgb: np.ndarray | None = None
    latlon_to_pixel: Any = None  # callable (lat, lon) -> (row, col) in ortho_rgb
    heatmap_samples: dict[str, np.ndarray] | None = None
    hypotheses: Sequence[dict[str, np.ndarray]] = ()  # particle snapshots (edge_geoloc.demo.hypotheses)
    metrics: dict[str, Any] = field(default_factory=dict)  # retrieval / localizer / runtime, measured upstream
    steps: Sequence[dict[str, Any]] = ()  # [{"step", "name", "title", "duration_s", "status", "folder"}]
    title: str = "edge-geoloc demo"
    dpi: int = 110


def outage_mask(stamps_s: np.ndarray, outages_s: Sequence[tuple[float, float]]) -> np.ndarray:
    """True for the frames whose stamp falls inside any ``[start, end)`` GNSS outage interval."""
    mask = np.zeros(stamps_s.shape, dtype=bool)
    for start_s, end_s in outages_s:
        mask |= (stamps_s >= start_s) & (stamps_s < end_s)
    return mask


def flight_summary(trajectories: dict[str, Path], outages_s: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Error statistics of GNSS only, fused and visual fixes, for each flight, overall and inside outages."""
    summary: dict[str, Any] = {"all": {}, "outage": {}}
    for flight, path in trajectories.items():
        table = read_trajectory(path)
        mask = outage_mask(table["stamp_s"], outages_s)
        for series, prefix in (("gnss_only", "gnss_held"), ("fused", "fused"), ("visual", "visual")):
            errors = position_errors_m(table, prefix)
            key = series if series == "gnss_only" else f"{series}_{flight}"
            summary["all"][key] = error_stats(errors)
            summary["outage"][key] = error_stats(errors[mask])
        total_ms = table["total_ms"][np.isfinite(table["total_ms"])]
        summary.setdefault("runtime", {})[flight] = _rate(total_ms)
    summary["frames"] = int(len(table["stamp_s"]))
    summary["outage_frames"] = int(mask.sum())
    return summary


def _rate(total_ms: np.ndarray) -> dict[str, float]:
    if total_ms.size == 0:
        return {"mean_ms": math.nan, "p90_ms": math.nan, "rate_hz": math.nan}
    mean_ms = float(total_ms.mean())
    return {"mean_ms": mean_ms, "p90_ms": float(np.percentile(total_ms, 90)), "rate_hz": 1000.0 / mean_ms}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, mean, p95, max) rows of the headline table, in metres."""
    labels = [("gnss_only", "GNSS only (last fix held)"),
              ("fused_teacher", "Fused, before adaptation"),
              ("fused_adapted", "Fused, after adaptation"),
              ("visual_teacher", "Visual fixes (any confidence), before adaptation"),
              ("visual_adapted", "Visual fixes (any confidence), after adaptation")]
    rows = []
    for scope, suffix in (("all", ""), ("outage", " [GNSS outage]")):
        for key, label in labels:
            stats = summary["flight"][scope].get(key)
            if stats and stats["n"] > 0:
                rows.append((label + suffix, _fmt(stats["mean_m"]), _fmt(stats["p95_m"]), _fmt(stats["max_m"])))
    return rows


def other_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows: retrieval recall, localizer errors, runtime rates."""
    rows = []
    for key, value in sorted(summary.get("retrieval", {}).items()):  # recall in percent, as the metrics report it
        rows.append((f"Retrieval drone->satellite {key}", _fmt(float(value), 1) + " %"))
    for name, r in summary.get("onboard_retrieval", {}).items():  # the runtime's global search
        rows.append((f"On-board retrieval R@1 (map matcher), {name.replace('_', ' ')}",
                     f"{_fmt(r['matcher'], 1)} % (NCC {_fmt(r['ncc'], 1)} %, chance {_fmt(r['chance'], 1)} %, "
                     f"n={r['queries']})"))
    for model in ("teacher", "adapted"):
        loc = summary.get("localizer", {}).get(model)
        if loc:
            count = loc.get("count", loc.get("n", "?"))
            vs = loc.get("vs_teacher")
            change = (f"; mean / teacher {vs['ratio']:.2f} [{vs['ratio_ci95'][0]:.2f}, {vs['ratio_ci95'][1]:.2f}] "
                      f"(95 % CI)") if vs else ""
            rows.append((f"Localizer {model}: mean / median error (target pairs)",
                         f"{_fmt(loc.get('mean_m'))} / {_fmt(loc.get('median_m'))} m (n={count}){change}"))
    adaptation = summary.get("adaptation") or {}
    if "samples" in adaptation:
        shift = (adaptation.get("teacher_vs_student") or {}).get("median_m")
        rows.append(("Adaptation (from the field logs, no ground truth)",
                     f"kept {adaptation.get('kept', '?')} of {adaptation['samples']} samples, "
                     f"teacher->student median shift {_fmt(shift)} m"))
    for flight, counters in summary.get("counters", {}).items():
        if counters:
            rows.append((f"Visual fixes fused ({flight} models)",
                         f"{counters.get('visual_fixes', 0)} of {counters.get('frames', 0)} frames "
                         f"({counters.get('low_confidence', 0)} low confidence, "
                         f"{counters.get('visual_rejected', 0)} gated out)"))
    reloc = summary.get("relocalization") or {}
    if reloc:
        rows.append((f"Relocalization after the {reloc['outage_s'][1] - reloc['outage_s'][0]:.0f} s GNSS outage "
                     f"(before adaptation)", f"{'success' if reloc['success'] else 'no success'} (< "
                     f"{_fmt(reloc['correct_m'], 0)} m within {reloc['success_frames']} frames), first correct fix "
                     f"after {_fmt(reloc['ttff_s'])} s, outage p95 {_fmt(reloc['outage_p95_m'])} m"))
    rows += car_rows(summary.get("car") or {})
    for flight, rate in summary["flight"].get("runtime", {}).items():
        rows.append((f"Runtime ({flight} models, ONNX Runtime CPU)",
                     f"{_fmt(rate['rate_hz'])} Hz ({_fmt(rate['mean_ms'])} ms/frame mean)"))
    return rows


def car_rows(car: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows of a car's drive, before and after adaptation: lateral / longitudinal, frames fused
    worse, the goal; the ground localizers on labelled pairs beside the patch centre; the log dataset."""
    if not car:
        return []
    rows = []
    for flight, drive in (("before", car), ("after", car.get("adapted"))):
        if drive:
            rows += _drive_rows(drive, f"{flight} adaptation")
    for condition, pairs in (car.get("ground_localizer") or {}).items():
        rows.append((f"Ground localizers, labelled target pairs seen {condition}: mean / median",
                     ", ".join(f"{label} {_fmt(pairs[key]['mean_m'])} / {_fmt(pairs[key]['median_m'])} m"
                               for key, label in _GROUND_ROWS if key in pairs) + f" (n={pairs['patch_centre']['n']})"))
    dataset = car.get("dataset") or {}
    if dataset:
        rows.append(("Adaptation dataset from the drive's logs",
                     f"{dataset.get('samples', 0)} pairs of {dataset.get('frames', 0)} logged frames"))
    return rows


_GROUND_ROWS = (("teacher", "BEV matcher"), ("adapted", "adapted"), ("classical_bev_ncc", "BEV + NCC"),
                ("patch_centre", "patch centre"))


def _drive_rows(drive: dict[str, Any], when: str) -> list[tuple[str, str]]:
    g, f = drive["gnss_only"], drive["fused"]
    return [(f"Lateral / longitudinal mean error, fused {when} (GNSS only)",
             f"{_fmt(f['lateral_mean_m'])} / {_fmt(f['longitudinal_mean_m'])} m ({_fmt(g['lateral_mean_m'])} / "
             f"{_fmt(g['longitudinal_mean_m'])} m)"),
            (f"Frames where fused {when} is worse than GNSS only", f"{_fmt(100 * drive['share_fused_worse'], 0)} %"),
            (f"Goal: fused p95 {when} at most half of GNSS only's",
             f"{'met' if drive['goal_p95_half'] else 'not met'} ({_fmt(f['p95_m'])} vs {_fmt(g['p95_m'])} m)")]


def format_table(summary: dict[str, Any]) -> str:
    """The terminal summary: a fixed-width table of measured numbers."""
    width = max(len(what) for what, *_ in [*summary_rows(summary), *other_rows(summary)]) + 2
    head = f"{'horizontal error (m)':<{width}}{'mean':>8}{'p95':>8}{'max':>8}"
    lines = [head, "-" * len(head)]
    lines += [f"{what:<{width}}{mean:>8}{p95:>8}{mx:>8}" for what, mean, p95, mx in summary_rows(summary)]
    lines.append("-" * len(head))
    lines += [f"{what:<{width}}{value}" for what, value in other_rows(summary)]
    return "\n".join(lines)


def build_report(inputs: ReportInputs, out_dir: Path) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.txt``, the PNGs and ``report.html`` into ``out_dir``; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"flight": flight_summary(inputs.trajectories, inputs.outages_s), **inputs.metrics,
               "outages_s": [list(o) for o in inputs.outages_s], "steps": list(inputs.steps)}
    images = write_figures(inputs, out_dir)
    summary["figures"] = {name: path.name for name, path in images.items()}
    summary = json_safe(summary)
    atomic_write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.txt").write_text(format_table(summary) + "\n", encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(inputs, summary, images), encoding="utf-8")
    return summary


def write_figures(inputs: ReportInputs, out_dir: Path) -> dict[str, Path]:
    """The trajectory, error and heat-map figures (each only when its inputs exist)."""
    tables = {flight: read_trajectory(path) for flight, path in inputs.trajectories.items()}
    first = next(iter(tables.values()))
    mask = outage_mask(first["stamp_s"], inputs.outages_s)
    errors = {"gnss_only": position_errors_m(first, "gnss_held")}
    errors |= {f"fused_{flight}": position_errors_m(table, "fused") for flight, table in tables.items()}
    images = {"errors": plots.plot_errors(out_dir / "errors.png", first["stamp_s"], errors, mask, inputs.dpi)}
    if inputs.ortho_rgb is not None and inputs.latlon_to_pixel is not None:
        tracks = {"truth": _track_px(inputs, first, "truth"), "gnss_only": _track_px(inputs, first, "gnss_held")}
        tracks |= {f"fused_{flight}": _track_px(inputs, table, "fused") for flight, table in tables.items()}
        images["trajectories"] = plots.plot_trajectories(out_dir / "trajectories.png", inputs.ortho_rgb, tracks,
                                                         mask, inputs.dpi)
    if inputs.heatmap_samples:
        images["heatmaps"] = plots.plot_heatmaps(out_dir / "heatmaps.png", inputs.heatmap_samples, inputs.dpi)
    if inputs.hypotheses and inputs.ortho_rgb is not None and inputs.latlon_to_pixel is not None:
        images["hypotheses"] = plots.plot_hypotheses(out_dir / "hypotheses.png", inputs.ortho_rgb, inputs.hypotheses,
                                                     inputs.latlon_to_pixel, float(first["stamp_s"][0]), inputs.dpi)
    return images


def _track_px(inputs: ReportInputs, table: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    lat, lon = table[f"{prefix}_lat_deg"], table[f"{prefix}_lon_deg"]
    ok = np.isfinite(lat) & np.isfinite(lon)
    track = np.full((lat.size, 2), np.nan)
    if ok.any():
        rows, cols = inputs.latlon_to_pixel(lat[ok], lon[ok])
        track[ok, 0], track[ok, 1] = rows, cols
    return track


def render_html(inputs: ReportInputs, summary: dict[str, Any], images: dict[str, Path]) -> str:
    """One self-contained page: headline table, figures (base64 PNG), the steps and what they wrote."""
    esc = html.escape
    table = "".join(f"<tr><td>{esc(w)}</td><td>{m}</td><td>{p}</td><td>{x}</td></tr>"
                    for w, m, p, x in summary_rows(summary))
    others = "".join(f"<tr><td>{esc(w)}</td><td colspan=3>{esc(v)}</td></tr>" for w, v in other_rows(summary))
    figures = "".join(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{_b64(path)}">'
                      f"<figcaption>{esc(name)}</figcaption></figure>" for name, path in images.items())
    steps = "".join(f"<tr><td>{s['step']}</td><td>{esc(s.get('title', s['name']))}</td><td>{esc(s['status'])}</td>"
                    f"<td>{_fmt(s.get('duration_s'))} s</td><td>{_fmt(s.get('cpu_s'))} s</td>"
                    f"<td><code>{esc(str(s.get('folder', '')))}</code></td></tr>" for s in inputs.steps)
    return _PAGE.format(title=esc(inputs.title), table=table, others=others, figures=figures, steps=steps)


def _b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #666; font-size: 0.9em; }}
</style></head><body>
<h1>{title}</h1>
<p>Every number on this page was measured in this run on the synthetic world; flight errors are recomputed from
the trajectory CSVs in the run folder (haversine distance to the simulator's ground truth).</p>
<h2>Results</h2>
<table><tr><th>horizontal error (m)</th><th>mean</th><th>p95</th><th>max</th></tr>{table}{others}</table>
<h2>Figures</h2>{figures}
<h2>Steps</h2>
<table><tr><th>#</th><th>step</th><th>status</th><th>wall</th><th>CPU</th><th>folder</th></tr>{steps}</table>
</body></html>
"""
