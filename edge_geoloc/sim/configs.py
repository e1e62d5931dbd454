"""Frozen configs of the synthetic-world commands (``configs/sim_*.yaml``); flights use
:class:`edge_geoloc.sim.flight.FlightConfig`, GNSS noise :class:`edge_geoloc.sim.gnss.GnssNoiseConfig`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AreaConfig:
    """Arguments of :func:`edge_geoloc.sim.generate_area`."""

    style: str = "source"
    seed: int = 0
    size_m: float = 1000.0
    gsd_m: float = 0.5
    center_lat_deg: float = 52.0
    center_lon_deg: float = 4.36
    condition: str | None = None  # the map's condition (name or YAML path); None: the layout's own look


@dataclass(frozen=True)
class UniversityConfig:
    """Arguments of :func:`edge_geoloc.sim.datasets.write_university_tree` (sizes as in University-1652)."""

    n_train: int = 20
    n_test: int = 10
    n_distractors: int = 5
    views_per_location: int = 54
    drone_px: int = 512
    satellite_px: int = 512
    satellite_size_m: float = 180.0
    hfov_deg: float = 60.0
    alt_range_m: tuple[float, float] = (121.5, 256.0)
    seed: int = 0
    photometric: bool = True
    condition: str | None = None  # capture condition of the drone views; None: the map's own


@dataclass(frozen=True)
class VigorConfig:
    """Arguments of :func:`edge_geoloc.sim.datasets.write_vigor_tree` (sizes as in VIGOR)."""

    panos_per_city: int = 40
    pano_px: tuple[int, int] = (1024, 512)
    satellite_px: int = 640
    satellite_m_per_px: float | None = None  # None: the real VIGOR city's resolution
    test_fraction: float = 0.5
    random_heading: bool = False
    seed: int = 0
    condition: str | None = None  # capture condition of the panoramas; None: the map's own
