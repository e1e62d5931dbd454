"""The demo's six steps, in the order of issue 8, and the terminal summary.

1 areas     source- and target-style synthetic areas (seed-keyed cache)
2 train     retrieval model + heat-map localizer on the source area; retrieval R@1 on the target area
3 export    both models to ONNX (parity-gated), tile index of the target area
4 fly       degraded-GNSS target flight through the runtime (ONNX Runtime), logged to MCAP
5 adapt     adaptation dataset from the logs, adapted localizer, re-export, the same flight again
6 report    summary.json, PNGs, report.html, terminal table

Each step writes only into its own folder of the run and reads earlier steps' folders, so any step can be
re-run from the artifacts of an earlier run (``--from-step``). The component work is done by the components'
public functions (see ``steps_train`` and ``steps_fly``); this module holds the orchestration.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edge_geoloc.demo.cache import cache_key, cached_build, source_fingerprint
from edge_geoloc.demo.components import require
from edge_geoloc.demo.config import AreaSpec
from edge_geoloc.demo.runfolder import MANIFEST_NAME, link_or_copy
from edge_geoloc.demo.runner import Step, StepContext

log = logging.getLogger(__name__)

AREA_ROLES = ("source", "target")


def demo_steps() -> list[Step]:
    """The demo's steps; the step functions of steps 2-6 live in their own modules."""
    from edge_geoloc.demo import steps_fly, steps_report, steps_train

    return [
        Step(1, "areas", "generate the source and target areas (cached by seed)", step_areas),
        Step(2, "train", "train retrieval + localizer on the source area", steps_train.step_train),
        Step(3, "export", "export to ONNX (parity gate) and build the target tile index", steps_train.step_export),
        Step(4, "fly", "fly the target area with degraded GNSS through the runtime, logging", steps_fly.step_fly),
        Step(5, "adapt", "adapt the localizer from the logs, re-export, fly again", steps_fly.step_adapt),
        Step(6, "report", "write the report (PNGs, HTML, summary)", steps_report.step_report),
    ]


def area_params(spec: AreaSpec, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``generate_area`` for one area of the run (also its cache key)."""
    return {"style": spec.style, "seed": seed + spec.seed_offset, "size_m": spec.size_m, "gsd_m": spec.gsd_m,
            "center_lat_deg": spec.center_lat_deg, "center_lon_deg": spec.center_lon_deg, "condition": spec.condition}


def step_areas(ctx: StepContext) -> dict[str, Any]:
    """Generate (or take from the cache) both areas and link them into ``01_areas/<role>/``."""
    import edge_geoloc.sim as sim_package

    generate_area = require("edge_geoloc.sim", "generate_area", "sim")
    fingerprint = source_fingerprint([Path(sim_package.__file__).parent])
    metrics: dict[str, Any] = {}
    specs = {"source": ctx.config.source_area, "target": ctx.config.target_area}
    for role in tqdm(AREA_ROLES, desc="areas", unit="area"):
        params = area_params(specs[role], ctx.config.seed)
        key = cache_key(f"{params['style']}-seed{params['seed']}", params, fingerprint)
        entry, hit = cached_build(ctx.cache_dir / "areas", key, lambda d, p=params: generate_area(**p).save(d),
                                  params)
        _link_entry(entry, ctx.step_dir / role)
        metrics[role] = {**params, "cache_hit": hit, "cache_entry": str(entry)}
    return metrics


def _link_entry(entry: Path, dst: Path) -> None:
    for path in sorted(p for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        link_or_copy(path, dst / path.relative_to(entry))


def area_dir(ctx: StepContext, role: str) -> Path:
    """The folder of the source or target area inside this run."""
    return ctx.step(1) / role


def print_summary(run_dir: Path) -> None:
    """Print the report's table (CLI use: the library itself never prints)."""
    summary_txt = run_dir / "06_report" / "summary.txt"
    if summary_txt.is_file():
        print("\n" + summary_txt.read_text(encoding="utf-8"))
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    for step in record["steps"]:
        took = (f"{step['duration_s']:.1f} s wall, {step.get('cpu_s', 0.0):.1f} CPU-s" if "duration_s" in step
                else step["status"])
        print(f"  step {step['step']} {step['name']:<8} {took}")
