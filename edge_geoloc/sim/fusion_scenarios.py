"""Synthetic fusion scenarios: a truth trajectory with simulated GNSS and visual fixes, and error statistics.

GNSS errors come from the synthetic world's receiver model (:func:`edge_geoloc.sim.gnss.simulate_gnss_errors`,
presets ``normal`` and ``urban_multipath``), the same one the simulated flights use. Used by
``benchmarks/fusion.py`` and the fusion tests to check the filter against ground truth without rendering
images. The visual fixes are *simulated* (Gaussian noise, wrong-tile outliers, low-confidence frames, with
rates chosen to resemble the heat-map localizer), not produced by the trained models; the replay CLI measures
the real pipeline on rendered flights.

Scenarios: ``normal`` (open sky), ``multipath`` (urban canyon: Poisson episodes of horizontal jumps that the
over-confident receiver barely reports), ``outage`` (60 s without GNSS), ``denied_start`` (no GNSS for the
first 60 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_geoloc.fusion.config import FusionConfig
from edge_geoloc.fusion.filter import FusionFilter
from edge_geoloc.geo import EnuFrame
from edge_geoloc.sim.gnss import GnssNoiseConfig, gnss_preset, simulate_gnss_errors
from edge_geoloc.types import CovarianceType, GnssFix, VisualFix, diagonal_covariance

SCENARIOS = ("normal", "multipath", "outage", "denied_start")


@dataclass(frozen=True)
class ScenarioConfig:
    """Rates, noise and event sizes of the simulated sensors."""

    duration_s: float = 300.0
    speed_mps: float = 10.0
    gnss_rate_hz: float = 5.0
    visual_rate_hz: float = 5.0
    outage_start_s: float = 100.0
    outage_s: float = 60.0
    visual_sigma_m: float = 3.0
    visual_outlier_rate: float = 0.08
    visual_outlier_m: tuple[float, float] = (40.0, 300.0)
    visual_low_confidence_rate: float = 0.15
    min_confidence: float = 0.3  # the pipeline's threshold: lower-confidence frames make no visual update


@dataclass(frozen=True)
class Scenario:
    name: str
    origin: EnuFrame
    stamps_s: np.ndarray  # (T,) truth stamps
    truth_en_m: np.ndarray  # (T, 2)
    gnss: list[GnssFix]
    visual: list[VisualFix]


def truth_trajectory(t_s: np.ndarray, speed_mps: float, radius_m: float = 300.0) -> np.ndarray:
    """A figure-eight (Gerono lemniscate) of ``radius_m`` flown at roughly ``speed_mps``: (T, 2) east/north."""
    omega = speed_mps / (1.6 * radius_m)
    phase = omega * t_s
    return np.stack([radius_m * np.sin(phase), radius_m * np.sin(phase) * np.cos(phase)], axis=1)


def make_scenario(name: str, seed: int = 0, cfg: ScenarioConfig | None = None) -> Scenario:
    """Deterministic scenario ``name`` (one of :data:`SCENARIOS`) for ``seed``."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    cfg = cfg or ScenarioConfig()
    rng = np.random.default_rng(seed)
    origin = EnuFrame(52.0, 4.36, 40.0)
    stamps = np.arange(0.0, cfg.duration_s, 1.0 / max(cfg.gnss_rate_hz, cfg.visual_rate_hz))
    truth = truth_trajectory(stamps, cfg.speed_mps)
    gnss = _simulate_gnss(name, stamps, truth, origin, cfg, rng)
    visual = _simulate_visual(stamps, truth, origin, cfg, rng)
    return Scenario(name, origin, stamps, truth, gnss, visual)


def gnss_noise(name: str, cfg: ScenarioConfig) -> GnssNoiseConfig:
    """The synthetic world's GNSS error model (:mod:`edge_geoloc.sim.gnss`) for a scenario."""
    if name == "multipath":
        return gnss_preset("urban_multipath", rate_hz=cfg.gnss_rate_hz)
    if name == "outage":
        return gnss_preset("normal", rate_hz=cfg.gnss_rate_hz,
                           outages=((cfg.outage_start_s, cfg.outage_start_s + cfg.outage_s),))
    if name == "denied_start":
        return gnss_preset("normal", rate_hz=cfg.gnss_rate_hz, outages=((0.0, cfg.outage_s),))
    return gnss_preset("normal", rate_hz=cfg.gnss_rate_hz)


def _simulate_gnss(name: str, stamps: np.ndarray, truth: np.ndarray, origin: EnuFrame, cfg: ScenarioConfig,
                   rng: np.random.Generator) -> list[GnssFix]:
    """GNSS fixes at ``gnss_rate_hz`` with the sim's errors; reported sigmas become a GST-style covariance."""
    step = max(1, round(len(stamps) / cfg.duration_s / cfg.gnss_rate_hz))
    idx = np.arange(0, len(stamps), step)
    track = simulate_gnss_errors(stamps[idx], gnss_noise(name, cfg), rng)
    fixes = []
    for k, i in enumerate(idx):
        if not track.valid[k]:
            continue
        err = track.error_enu_m[k]
        lat, lon, alt = origin.from_enu(truth[i, 0] + err[0], truth[i, 1] + err[1], 100.0 + err[2])
        fixes.append(GnssFix(float(stamps[i]), lat, lon, alt, diagonal_covariance(*track.sigma_enu_m[k]),
                             CovarianceType.DIAGONAL_KNOWN, num_satellites=int(track.num_satellites[k]),
                             hdop=float(track.hdop[k])))
    return fixes


def _simulate_visual(stamps: np.ndarray, truth: np.ndarray, origin: EnuFrame, cfg: ScenarioConfig,
                     rng: np.random.Generator) -> list[VisualFix]:
    dt = 1.0 / cfg.visual_rate_hz
    step = max(1, round(dt * (len(stamps) / cfg.duration_s)))
    fixes = []
    for i in range(0, len(stamps), step):
        confidence = float(rng.uniform(0.05, cfg.min_confidence)) if rng.random() < cfg.visual_low_confidence_rate \
            else float(rng.uniform(0.5, 0.95))
        en = truth[i] + cfg.visual_sigma_m * rng.standard_normal(2)
        if rng.random() < cfg.visual_outlier_rate:
            angle, size = rng.uniform(0, 2 * math.pi), rng.uniform(*cfg.visual_outlier_m)
            en = en + size * np.array([math.cos(angle), math.sin(angle)])
        lat, lon, _ = origin.from_enu(en[0], en[1], 100.0)
        var = cfg.visual_sigma_m**2
        fixes.append(VisualFix(float(stamps[i]), lat, lon, float(en[0]), float(en[1]), (var, 0.0, 0.0, var),
                               confidence, 1.0, -1, 0.5))
    return fixes


def run_fusion(scenario: Scenario, cfg: FusionConfig | None = None, use_visual: bool = True,
               min_confidence: float = 0.3) -> np.ndarray:
    """Replay a scenario through :class:`FusionFilter`; (T, 2) fused east/north per truth stamp (NaN before
    the filter starts). Visual fixes under ``min_confidence`` are skipped, as the pipeline does."""
    filt = FusionFilter(cfg, origin=scenario.origin)
    events = [(f.stamp_s, 0, f) for f in scenario.gnss]
    if use_visual:
        events += [(f.stamp_s, 1, f) for f in scenario.visual if f.confidence >= min_confidence]
    events.sort(key=lambda e: (e[0], e[1]))
    out = np.full((len(scenario.stamps_s), 2), np.nan)
    j = 0
    for i, t in enumerate(scenario.stamps_s):
        while j < len(events) and events[j][0] <= t:
            _, kind, fix = events[j]
            (filt.update_gnss if kind == 0 else filt.update_visual)(fix)
            j += 1
        filt.predict_to(float(t))
        if filt.initialized:
            out[i] = filt.position_enu()[:2]
    return out


def gnss_only_track(scenario: Scenario) -> np.ndarray:
    """(T, 2) the latest raw GNSS fix at each truth stamp (held through outages; NaN before the first)."""
    out = np.full((len(scenario.stamps_s), 2), np.nan)
    fixes = iter(scenario.gnss)
    current, nxt = None, next(fixes, None)
    for i, t in enumerate(scenario.stamps_s):
        while nxt is not None and nxt.stamp_s <= t:
            current, nxt = nxt, next(fixes, None)
        if current is not None:
            out[i] = scenario.origin.to_enu(current.lat_deg, current.lon_deg, current.alt_m)[:2]
    return out


def error_stats(estimate_en_m: np.ndarray, truth_en_m: np.ndarray) -> dict[str, float]:
    """Horizontal error statistics in metres over the stamps with an estimate, and the coverage fraction."""
    err = np.linalg.norm(estimate_en_m - truth_en_m, axis=1)
    valid = err[np.isfinite(err)]
    if valid.size == 0:
        return {"mean_m": float("nan"), "median_m": float("nan"), "p95_m": float("nan"),
                "max_m": float("nan"), "coverage": 0.0}
    return {"mean_m": float(valid.mean()), "median_m": float(np.median(valid)),
            "p95_m": float(np.percentile(valid, 95)), "max_m": float(valid.max()),
            "coverage": float(valid.size / err.size)}
