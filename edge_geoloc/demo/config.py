"""The demo's config: one frozen dataclass, loaded from ``configs/demo.yaml`` or ``configs/demo_quick.yaml``.

The demo owns only the shape of the run (areas, flight, report). Each component's section (``retrieval``,
``localizer``, ``export``, ``index``, ``runtime``, ``adaptation`` ...) is a plain mapping handed unchanged to that
component's own config dataclass, so the component validates its keys and the demo never retypes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PROFILES = ("full", "quick")


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
class ReportSpec:
    """What the report shows."""

    heatmap_frames: int = 4  # frames shown with their heat maps
    dpi: int = 110
    title: str = "edge-geoloc demo: fly, log, adapt, redeploy"


@dataclass(frozen=True)
class DemoConfig:
    """Everything a demo run needs; written as ``config.yaml`` in every run folder."""

    profile: Literal["full", "quick"] = "full"
    seed: int = 0
    threads: int = 2  # torch / ORT intra-op threads
    source_area: AreaSpec = AreaSpec(style="source")
    target_area: AreaSpec = AreaSpec(style="target", seed_offset=1)
    # Component sections: passed unchanged to each component's own config dataclass / function.
    retrieval_data: dict[str, Any] = field(default_factory=dict)
    retrieval: dict[str, Any] = field(default_factory=dict)
    localizer_data: dict[str, Any] = field(default_factory=dict)
    localizer: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    flight: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    fieldlog: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    adaptation: dict[str, Any] = field(default_factory=dict)
    eval_pairs: dict[str, Any] = field(default_factory=dict)
    report: ReportSpec = ReportSpec()

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def default_config_path(quick: bool, configs_dir: Path | None = None) -> Path:
    """``configs/demo.yaml`` or ``configs/demo_quick.yaml`` of the repository."""
    configs_dir = configs_dir or Path(__file__).resolve().parents[2] / "configs"
    return configs_dir / ("demo_quick.yaml" if quick else "demo.yaml")
