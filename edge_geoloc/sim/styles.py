"""City styles: every number that makes one synthetic city look unlike another, loaded from YAML.

A style fixes the road layout (organic streets or a rotated grid, block size, road width), the buildings
(coverage, footprint size, height, roof and facade palettes, gabled roofs), vegetation, water, the ground
palette and the lighting (sun direction, shadow strength, colour tint). The built-in styles live in
``edge_geoloc/sim/styles/*.yaml``; more can be defined in any YAML file and loaded with :func:`load_style`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_geoloc.config import ConfigError, from_dict, read_yaml_mapping

STYLES_DIR = Path(__file__).with_name("styles")

Rgb = tuple[int, int, int]
Range = tuple[float, float]


@dataclass(frozen=True)
class Style:
    """How a synthetic city looks. Ranges are ``(min, max)``; colours are RGB 0..255."""

    name: str
    road_layout: Literal["grid", "organic"] = "grid"
    block_size_m: Range = (60.0, 120.0)
    road_width_m: Range = (6.0, 12.0)
    arterial_width_m: float = 16.0
    arterial_count: int = 2
    road_keep_prob: float = 0.9
    road_jitter: float = 0.1
    road_curvature: float = 0.05
    building_coverage: float = 0.28
    building_size_m: Range = (10.0, 30.0)
    building_height_m: Range = (6.0, 24.0)
    tall_building_fraction: float = 0.03
    building_setback_m: float = 2.0
    building_depth_m: float = 35.0
    gabled_fraction: float = 0.5
    roof_colors: tuple[Rgb, ...] = ((160, 80, 60), (120, 120, 120))
    facade_colors: tuple[Rgb, ...] = ((200, 190, 170), (150, 150, 150))
    tree_density_per_ha: float = 8.0
    tree_radius_m: Range = (2.0, 5.0)
    tree_height_m: Range = (6.0, 14.0)
    street_tree_spacing_m: float = 20.0
    park_count: int = 3
    park_radius_m: Range = (40.0, 90.0)
    paved_count: int = 6
    water: Literal["river", "ponds", "none"] = "river"
    water_width_m: Range = (25.0, 40.0)
    ground_color: Rgb = (150, 135, 105)
    grass_color: Rgb = (95, 130, 65)
    road_color: Rgb = (90, 90, 95)
    paved_color: Rgb = (150, 145, 140)
    water_color: Rgb = (50, 75, 90)
    tree_color: Rgb = (60, 95, 50)
    marking_color: Rgb = (230, 230, 225)
    sky_color: Rgb = (150, 190, 235)
    sun_azimuth_deg: float = 180.0
    sun_elevation_deg: float = 45.0
    shadow_strength: float = 0.45
    noise_strength: float = 0.1
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("block_size_m", "road_width_m", "building_size_m", "building_height_m", "tree_radius_m",
                     "tree_height_m", "park_radius_m", "water_width_m"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"style {self.name!r}: {name} must be (min, max) with 0 < min <= max, got {lo, hi}")
        if not 5.0 <= self.sun_elevation_deg <= 90.0:
            raise ValueError(f"style {self.name!r}: sun_elevation_deg must be in [5, 90], got {self.sun_elevation_deg}")
        for name in ("building_coverage", "road_keep_prob", "gabled_fraction", "shadow_strength"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"style {self.name!r}: {name} must be in [0, 1], got {getattr(self, name)}")
        if not (self.roof_colors and self.facade_colors):
            raise ValueError(f"style {self.name!r}: roof_colors and facade_colors need at least one colour each")


def builtin_style_names() -> list[str]:
    """Names of the styles shipped with the package (``source``, ``target``, ...)."""
    return sorted(p.stem for p in STYLES_DIR.glob("*.yaml"))


def load_style(path: str | Path) -> Style:
    """Load a style from a YAML file (keys: the fields of :class:`Style`; unknown keys are rejected)."""
    data = read_yaml_mapping(path)
    data.setdefault("name", Path(path).stem)
    return from_dict(Style, data)


def get_style(style: str | Style) -> Style:
    """A :class:`Style` from a built-in name, a YAML path, or a Style (returned as is)."""
    if isinstance(style, Style):
        return style
    if not isinstance(style, str):
        raise TypeError(f"style must be a name, a YAML path or a Style, got {type(style).__name__}")
    builtin = STYLES_DIR / f"{style}.yaml"
    if builtin.is_file():
        return load_style(builtin)
    if style.endswith((".yaml", ".yml")) and Path(style).is_file():
        return load_style(style)
    raise ConfigError(f"unknown style {style!r}: use one of {builtin_style_names()} or the path of a style YAML file")
