"""The demo's config: one frozen dataclass, loaded from ``configs/demo.yaml`` or ``configs/demo_quick.yaml``.

The demo owns the shape of the run (areas, seed, report). Each component's section is typed by that
component's own config dataclass (``retrieval: RetrievalTrainConfig``, ``adaptation: AdaptConfig`` ...), so the
whole file is checked when it is loaded: a misspelt key anywhere fails before step 1, with the valid keys.
Two sections are keyword arguments of a function (``retrieval_data``, ``dataset``); their keys are checked
against that function's signature. The run's ``seed`` is passed on to the flight, the training data and
adaptation by the steps (derived, not written twice).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_geoloc.config import ConfigError
from edge_geoloc.data.ground_bev_pairs import GroundBevPairConfig
from edge_geoloc.data.ground_pairs import GroundPairConfig
from edge_geoloc.data.pairs import DronePairConfig
from edge_geoloc.export.config import ExportConfig
from edge_geoloc.fieldlog.config import FieldLogConfig
from edge_geoloc.fieldlog.dataset import build_pairs_from_logs
from edge_geoloc.runtime.classical_ground import BevNccConfig
from edge_geoloc.runtime.config import RuntimeConfig
from edge_geoloc.sim.datasets import write_university_tree
from edge_geoloc.sim.flight import FlightConfig
from edge_geoloc.train.adaptation import AdaptConfig
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig
from edge_geoloc.train.map_matcher import MatcherOptimConfig, MatcherTrainConfig
from edge_geoloc.train.matcher_adaptation import MatcherAdaptConfig
from edge_geoloc.train.retrieval_trainer import RetrievalTrainConfig

PROFILES = ("full", "quick")
VEHICLES = ("drone", "car")
# Arguments of the keyword sections' functions that the demo passes itself (not configurable).
_RUN_ARGUMENTS = {"root", "areas", "seed", "logs", "out_dir", "ortho"}


@dataclass(frozen=True)
class AreaSpec:
    """One synthetic area (see ``edge_geoloc.sim.generate_area``)."""

    style: str = "source"
    size_m: float = 1000.0
    gsd_m: float = 0.5
    center_lat_deg: float = 52.0
    center_lon_deg: float = 4.36
    seed_offset: int = 0  # added to the run's seed, so source and target differ
    condition: str | None = None  # the map's condition (edge_geoloc/sim/conditions/); None: the layout's own look

    def __post_init__(self) -> None:
        if self.size_m <= 0 or self.gsd_m <= 0:
            raise ValueError(f"area size_m and gsd_m must be positive, got {self.size_m}, {self.gsd_m}")


@dataclass(frozen=True)
class EvalPairsSpec:
    """The labelled pair sets that only measure: source validation, and target teacher-vs-adapted evaluation
    (never seen by adaptation); otherwise like ``localizer_data``."""

    count: int = 64


@dataclass(frozen=True)
class MatcherEvalSpec:
    """Held-out frames on which the demo measures on-board retrieval (``edge_geoloc.evaluate.map_recall``): over
    the target area (the training styles, a new layout) and over an area of ``other_style`` (never trained on),
    each seen under the flight's condition against the map's."""

    queries: int = 60  # frames per test area
    margin_m: float = 40.0  # the frames' nadir points stay this far inside the area's edge
    other_style: str = "target"
    other_seed_offset: int = 2  # added to the run's seed (source and target areas use 0 and 1)


@dataclass(frozen=True)
class GroundMatcherSpec:
    """The car's learned BEV matcher (``train.map_matcher`` on ``data.ground_bev_pairs``): rendered views of
    areas of the training styles (never the target area), whose config also fixes the model's geometry (BEV,
    tile, resolution, search radius: ``GroundBevPairConfig.matcher_kwargs``), and the optimiser."""

    pairs: GroundBevPairConfig = GroundBevPairConfig()
    optim: MatcherOptimConfig = MatcherOptimConfig(lr=2e-3, batch_size=16, steps=300, warmup_steps=10,
                                                   position_weight=1.0)
    model: str = "map_matcher_micro"
    validate_every: int = 50  # the learning curve's error on the labelled target pairs (reported, never chosen on)


@dataclass(frozen=True)
class ReportSpec:
    """What the report shows."""

    heatmap_frames: int = 4  # frames shown with their heat maps
    dpi: int = 110
    title: str = "edge-geoloc demo: fly, log, adapt, redeploy"


@dataclass(frozen=True)
class DemoConfig:
    """Everything a demo run needs; written as ``config.yaml`` in every run folder."""

    profile: Literal["full", "quick"] = "full"
    vehicle: Literal["drone", "car"] = "drone"  # car: a ground panorama, no retrieval (edge_geoloc.demo.steps_car)
    seed: int = 0
    threads: int = 2  # torch / ORT intra-op threads
    source_area: AreaSpec = AreaSpec(style="source")
    target_area: AreaSpec = AreaSpec(style="target", seed_offset=1)
    retrieval_data: dict[str, Any] = field(default_factory=dict)  # write_university_tree keyword arguments
    retrieval: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)
    matcher: MatcherTrainConfig | None = None  # the learned map matcher: the runtime's global search when set
    matcher_eval: MatcherEvalSpec = MatcherEvalSpec()
    localizer_data: DronePairConfig = field(default_factory=DronePairConfig)
    localizer: LocalizerTrainConfig = field(default_factory=LocalizerTrainConfig)
    eval_pairs: EvalPairsSpec = field(default_factory=EvalPairsSpec)
    export: ExportConfig = field(default_factory=ExportConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    flight: FlightConfig = field(default_factory=FlightConfig)
    fieldlog: FieldLogConfig = field(default_factory=FieldLogConfig)
    dataset: dict[str, Any] = field(default_factory=dict)  # build_pairs_from_logs keyword arguments
    adaptation: AdaptConfig = field(default_factory=AdaptConfig)
    report: ReportSpec = ReportSpec()
    ground_localizer: BevNccConfig = field(default_factory=BevNccConfig)  # the car's classical baseline (BEV + NCC)
    ground_matcher: GroundMatcherSpec = GroundMatcherSpec()  # the car's learned localizer
    ground_adaptation: MatcherAdaptConfig = field(default_factory=MatcherAdaptConfig)  # adapting it from the logs
    ground_eval: GroundPairConfig = field(default_factory=GroundPairConfig)  # the car's labelled target pairs

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.vehicle == "car" and (self.flight.kind != "car" or self.flight.camera != "panorama"):
            raise ConfigError("vehicle: car drives a ground panorama: set flight.kind=car and flight.camera=panorama "
                              f"(got {self.flight.kind}, {self.flight.camera})")
        check_keyword_section("retrieval_data", self.retrieval_data, write_university_tree)
        check_keyword_section("dataset", self.dataset, build_pairs_from_logs)


def check_keyword_section(name: str, section: Mapping[str, Any], function: Callable[..., Any]) -> None:
    """Fail (ConfigError) when ``section`` has a key that is not a configurable argument of ``function``."""
    valid = sorted(set(inspect.signature(function).parameters) - _RUN_ARGUMENTS)
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)} "
                          f"({function.__module__}.{function.__name__}); valid keys: {', '.join(valid)}")


def default_config_path(quick: bool, configs_dir: Path | None = None, vehicle: str = "drone") -> Path:
    """``configs/demo[_car][_quick].yaml`` of the repository."""
    if vehicle not in VEHICLES:
        raise ConfigError(f"vehicle must be one of {', '.join(VEHICLES)}, got {vehicle!r}")
    configs_dir = configs_dir or Path(__file__).resolve().parents[2] / "configs"
    return configs_dir / f"demo{'_car' if vehicle == 'car' else ''}{'_quick' if quick else ''}.yaml"
