"""Conditions: what the same place looks like at one moment, apart from its layout.

A synthetic area is *layout* (a style and a seed: streets, buildings, trees) seen under a *condition*. A map
(the orthophoto) and a flight over the same layout are rendered under separate conditions, as real maps are
months or years older than the flight. A condition has four parts:

- ``light``: sun azimuth/elevation and shadow strength (``None`` keeps the style's sun with its per-seed jitter);
- ``season``: vegetation colour, dry grass, bare trees (leaf-off), snow on open ground and flat roofs;
- ``change``: the share of buildings removed or added since the layout, parked cars, faded road markings;
- ``sensor``: white balance, gamma, contrast, haze, noise, optical blur and effective resolution in metres on
  the ground, JPEG compression. A map's sensor is applied to its orthophoto; a camera's sensor to each view.

Conditions are YAML files like styles (built-in ones in ``edge_geoloc/sim/conditions/``). Everything drawn from
a condition is deterministic for (layout seed, style, condition name). Textures that belong to the surfaces
(asphalt wear, roof texture, grass patches) come from the layout seed and stay the same under every condition.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.config import ConfigError, from_dict, read_yaml_mapping

CONDITIONS_DIR = Path(__file__).with_name("conditions")
Rgb = tuple[float, float, float]
HAZE_RGB = (206.0, 212.0, 220.0)
SNOW_RGB = (236.0, 240.0, 246.0)


@dataclass(frozen=True)
class Light:
    """The sun. ``None``: the style's sun, jittered per area seed (the layout's own light)."""

    sun_azimuth_deg: float | None = None  # clockwise from north, where the sun is
    sun_elevation_deg: float | None = None
    shadow_strength: float | None = None  # 0: no shadows .. 1: black shadows

    def __post_init__(self) -> None:
        if self.sun_elevation_deg is not None and not 5.0 <= self.sun_elevation_deg <= 90.0:
            raise ValueError(f"light.sun_elevation_deg must be in [5, 90] (the sun above the horizon), "
                             f"got {self.sun_elevation_deg}")
        if self.sun_azimuth_deg is not None and not math.isfinite(self.sun_azimuth_deg):
            raise ValueError(f"light.sun_azimuth_deg must be finite, got {self.sun_azimuth_deg}")
        _check_share("light.shadow_strength", self.shadow_strength)


@dataclass(frozen=True)
class Season:
    """Vegetation and ground cover."""

    vegetation_tint: Rgb = (1.0, 1.0, 1.0)  # multiplies tree and grass colours (autumn: more red, less blue)
    grass_dryness: float = 0.0  # 0: the style's grass .. 1: grass the colour of bare ground
    leaf_off: float = 0.0  # 0: full canopies .. 1: bare trees (ground and branches show, thin shadows)
    snow_cover: float = 0.0  # share of open ground, grass, lots and flat roofs under snow (roads are cleared)

    def __post_init__(self) -> None:
        for name in ("grass_dryness", "leaf_off", "snow_cover"):
            _check_share(f"season.{name}", getattr(self, name))
        if len(self.vegetation_tint) != 3 or not all(0.0 < v <= 3.0 for v in self.vegetation_tint):
            raise ValueError(f"season.vegetation_tint must be 3 factors in (0, 3], got {self.vegetation_tint}")


@dataclass(frozen=True)
class Change:
    """What changed on the ground relative to the layout (each draw is per condition)."""

    buildings_removed: float = 0.0  # share of the layout's buildings demolished (a bare lot remains)
    buildings_added: float = 0.0  # new buildings, as a share of the layout's count, on free open ground
    car_cover: float = 0.0  # share of road and lot area covered by parked or moving cars
    marking_visibility: float = 1.0  # 1: fresh lane markings .. 0: worn away

    def __post_init__(self) -> None:
        for name in ("buildings_removed", "buildings_added", "car_cover", "marking_visibility"):
            _check_share(f"change.{name}", getattr(self, name))


@dataclass(frozen=True)
class Sensor:
    """The imaging chain. Physical sizes are metres on the ground, so they mean the same at every zoom."""

    white_balance: Rgb = (1.0, 1.0, 1.0)
    gain: float = 1.0
    gamma: float = 1.0
    contrast: float = 1.0
    haze: float = 0.0  # blend towards a bright haze colour
    noise_sigma: float = 0.0  # grey levels (0..255)
    blur_m: float = 0.0  # Gaussian blur sigma on the ground (optics, motion, atmosphere)
    resolution_m: float | None = None  # effective ground resolution (the satellite's GSD); None: native
    jpeg_quality: int | None = None  # JPEG round trip (compression artefacts); None: none

    def __post_init__(self) -> None:
        if len(self.white_balance) != 3 or not all(0.3 <= v <= 3.0 for v in self.white_balance):
            raise ValueError(f"sensor.white_balance must be 3 factors in [0.3, 3], got {self.white_balance}")
        for name, lo, hi in (("gain", 0.2, 5.0), ("gamma", 0.2, 5.0), ("contrast", 0.2, 5.0)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"sensor.{name} must be in [{lo}, {hi}], got {getattr(self, name)}")
        _check_share("sensor.haze", self.haze)
        if not (0.0 <= self.noise_sigma <= 64.0 and 0.0 <= self.blur_m <= 20.0):
            raise ValueError(f"sensor.noise_sigma must be in [0, 64] and blur_m in [0, 20], got "
                             f"{self.noise_sigma}, {self.blur_m}")
        if self.resolution_m is not None and not 0.01 <= self.resolution_m <= 50.0:
            raise ValueError(f"sensor.resolution_m must be in [0.01, 50] metres, got {self.resolution_m}")
        if self.jpeg_quality is not None and not 5 <= self.jpeg_quality <= 100:
            raise ValueError(f"sensor.jpeg_quality must be in [5, 100], got {self.jpeg_quality}")

    @property
    def is_identity(self) -> bool:
        return self == Sensor()


@dataclass(frozen=True)
class Condition:
    """Light, season, change and sensor of one capture (a map or a flight). See the module docstring."""

    name: str = "layout"
    light: Light = field(default_factory=Light)
    season: Season = field(default_factory=Season)
    change: Change = field(default_factory=Change)
    sensor: Sensor = field(default_factory=Sensor)
    description: str = ""

    def rng(self, seed: int, style_name: str, purpose: str) -> np.random.Generator:
        """A generator private to this condition, layout and purpose (cars, changes, noise...)."""
        key = f"{self.name}/{purpose}".encode()
        return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(style_name.encode()), zlib.crc32(key)])


def builtin_condition_names() -> list[str]:
    """Names of the conditions shipped with the package."""
    return sorted(p.stem for p in CONDITIONS_DIR.glob("*.yaml"))


def load_condition(path: str | Path) -> Condition:
    """Read a condition YAML file (unknown keys and impossible values are rejected, naming the file)."""
    data = read_yaml_mapping(path)
    data.setdefault("name", Path(path).stem)
    try:
        return from_dict(Condition, data)
    except ConfigError as err:
        raise ConfigError(f"condition file {path}: {err}") from err


def get_condition(condition: str | Condition | None) -> Condition:
    """A :class:`Condition` from a built-in name, a YAML path, a Condition, or ``None`` (the layout's look)."""
    if condition is None or condition == LAYOUT.name:
        return LAYOUT
    if isinstance(condition, Condition):
        return condition
    builtin = CONDITIONS_DIR / f"{condition}.yaml"
    if builtin.is_file():
        return load_condition(builtin)
    if str(condition).endswith((".yaml", ".yml")) and Path(condition).is_file():
        return load_condition(condition)
    raise ConfigError(f"unknown condition {condition!r}: use one of {builtin_condition_names()}, "
                      f"{LAYOUT.name!r}, or the path of a condition YAML file")


def apply_sensor(image: np.ndarray, sensor: Sensor, m_per_px: float, rng: np.random.Generator) -> np.ndarray:
    """An (H, W, 3) uint8 image as ``sensor`` records it, given the ground size of one pixel.

    Order: resolution (area-down, linear-up), blur, tone curve (gain * white balance * x^gamma, contrast about
    mid-grey), haze, noise, JPEG round trip.
    """
    if sensor.is_identity:
        return image
    out = np.ascontiguousarray(image)
    h, w = out.shape[:2]
    if sensor.resolution_m and sensor.resolution_m > 1.05 * m_per_px:
        factor = m_per_px / sensor.resolution_m
        small = cv2.resize(out, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma_px = sensor.blur_m / max(m_per_px, 1e-6)
    if sigma_px > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), sigma_px)
    out = cv2.LUT(out, _tone_lut(sensor))
    image_f = out.astype(np.float32)
    if sensor.haze > 0:
        image_f = image_f * (1 - sensor.haze) + np.asarray(HAZE_RGB, np.float32) * sensor.haze
    if sensor.noise_sigma > 0:
        image_f += rng.standard_normal(image_f.shape, dtype=np.float32) * sensor.noise_sigma
    out = np.clip(image_f + 0.5, 0, 255).astype(np.uint8)
    if sensor.jpeg_quality is not None:
        bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(sensor.jpeg_quality)])
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) if ok else out
    return out


def _tone_lut(sensor: Sensor) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64) / 255.0
    curves = [((levels**sensor.gamma * sensor.gain * wb) - 0.5) * sensor.contrast + 0.5 for wb in sensor.white_balance]
    return np.clip(np.stack(curves, -1) * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)


def _check_share(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a share in [0, 1], got {value}")


LAYOUT = Condition()  # the layout's own look: the style's sun, no season, no change, an ideal sensor


def sample_condition(rng: np.random.Generator, name: str) -> Condition:
    """A random capture condition for training data (domain randomisation): any sun, season and sensor within
    plausible ranges. Benchmarks keep their test conditions (the built-in YAML files) out of training by using
    these instead."""
    sun = Light(float(rng.uniform(0, 360)), float(rng.uniform(12, 75)), float(rng.uniform(0.05, 0.7)))
    autumn = rng.uniform(0, 1)
    season = Season(vegetation_tint=(1 + 0.4 * autumn, 1.0, 1 - 0.4 * autumn),
                    grass_dryness=float(rng.uniform(0, 0.8)), leaf_off=float(rng.choice([0.0, rng.uniform(0, 1)])),
                    snow_cover=float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0, 0.7)])))
    change = Change(float(rng.uniform(0, 0.08)), float(rng.uniform(0, 0.08)), float(rng.uniform(0, 0.07)),
                    float(rng.uniform(0.3, 1.0)))
    sensor = Sensor(white_balance=tuple(float(v) for v in rng.uniform(0.85, 1.15, 3)),
                    gain=float(rng.uniform(0.8, 1.2)), gamma=float(rng.uniform(0.8, 1.25)),
                    contrast=float(rng.uniform(0.8, 1.2)),
                    haze=float(rng.uniform(0, 0.12)), noise_sigma=float(rng.uniform(0, 5)),
                    blur_m=float(rng.uniform(0, 0.3)), jpeg_quality=int(rng.integers(60, 95)))
    return Condition(name, sun, season, change, sensor, "random training condition")
