"""The demo's six steps, in the order of issue 8, and the terminal summary (a car's: ``steps_car``).

1 areas     source- and target-style synthetic areas (seed-keyed cache)
2 train     retrieval model + heat-map localizer on the source area; retrieval R@1 on the target area
3 export    both models to ONNX (parity-gated), tile index of the target area
4 fly       degraded-GNSS target flight through the runtime (ONNX Runtime), logged to MCAP
5 adapt     adaptation dataset from the logs, adapted localizer, re-export, the same flight again
6 report    summary.json, PNGs, report.html, terminal table

Each step writes only into its own folder of the run and reads earlier steps' folders (named paths:
``edge_geoloc.demo.layout.RunLayout``), so any step can be re-run from the artifacts of an earlier run
(``--from-step``). The component work is done by the components' public functions (see ``steps_train`` and
``steps_fly``); this module is the recipe.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

import edge_geoloc.sim as sim_package
from edge_geoloc.demo.cache import cache_key, cached_build, link_entry, source_fingerprint
from edge_geoloc.demo.config import AreaSpec
from edge_geoloc.demo.layout import AREA_ROLES, STEP_NAMES, RunLayout
from edge_geoloc.demo.runner import Step, StepContext
from edge_geoloc.demo.steps_car import step_car_adapt, step_car_export, step_car_report, step_car_train, step_drive
from edge_geoloc.demo.steps_fly import step_adapt, step_fly
from edge_geoloc.demo.steps_report import step_report
from edge_geoloc.demo.steps_train import step_export, step_train
from edge_geoloc.sim import generate_area

log = logging.getLogger(__name__)


def demo_steps(vehicle: str = "drone") -> list[Step]:
    """The demo's steps for ``vehicle`` (drone or car), in order."""
    drone = {
        1: ("generate the source and target areas (cached by seed)", step_areas),
        2: ("train retrieval + localizer on the source area", step_train),
        3: ("export to ONNX (parity gate) and build the target tile index", step_export),
        4: ("fly the target area with degraded GNSS through the runtime, logging", step_fly),
        5: ("adapt the localizer from the logs, re-export, fly again", step_adapt),
        6: ("write the report (PNGs, HTML, summary)", step_report),
    }
    car = {
        1: ("generate the target area (cached by seed)", step_areas),
        2: ("train the learned BEV matcher on rendered ground views (not the target area)", step_car_train),
        3: ("export the matcher to ONNX (parity gate); the target map as the patch source", step_car_export),
        4: ("drive the target area with urban-multipath GNSS through the runtime, logging", step_drive),
        5: ("adapt the matcher from the logs, re-export, drive again", step_car_adapt),
        6: ("write the report (PNGs, HTML, summary)", step_car_report),
    }
    table = {"drone": drone, "car": car}[vehicle]
    return [Step(n, STEP_NAMES[n], title, run) for n, (title, run) in table.items()]


def area_params(spec: AreaSpec, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``generate_area`` for one area of the run (also its cache key)."""
    return {"style": spec.style, "seed": seed + spec.seed_offset, "size_m": spec.size_m, "gsd_m": spec.gsd_m,
            "center_lat_deg": spec.center_lat_deg, "center_lon_deg": spec.center_lon_deg, "condition": spec.condition}


def step_areas(ctx: StepContext) -> dict[str, Any]:
    """Generate (or take from the cache) both areas and link them into ``01_areas/<role>/``."""
    fingerprint = source_fingerprint([Path(sim_package.__file__).parent])
    metrics: dict[str, Any] = {}
    specs = {"source": ctx.config.source_area, "target": ctx.config.target_area}
    roles = AREA_ROLES if ctx.config.vehicle == "drone" else ("target",)  # a car trains nothing on a source area
    for role in tqdm(roles, desc="areas", unit="area"):
        params = area_params(specs[role], ctx.config.seed)
        key = cache_key(f"{params['style']}-seed{params['seed']}", params, fingerprint)
        entry, hit = cached_build(ctx.cache_dir / "areas", key, lambda d, p=params: generate_area(**p).save(d),
                                  params)
        link_entry(entry, ctx.layout.area(role))
        metrics[role] = {**params, "cache_hit": hit, "cache_entry": str(entry)}
    return metrics


def print_summary(run_dir: Path) -> None:
    """Print the report's table (CLI use: the library itself never prints)."""
    summary_txt = RunLayout(run_dir).summary_txt
    if summary_txt.is_file():
        print("\n" + summary_txt.read_text(encoding="utf-8"))
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    for step in record["steps"]:
        took = (f"{step['duration_s']:.1f} s wall, {step.get('cpu_s', 0.0):.1f} CPU-s" if "duration_s" in step
                else step["status"])
        print(f"  step {step['step']} {step['name']:<8} {took}")
