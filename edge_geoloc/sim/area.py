"""A synthetic area: a 2.5D city placed at a real lat/lon, its orthophoto and its geo-reference.

The local frame is metres east/north of the area centre along the UTM grid axes of the centre's zone;
the orthophoto is north-up in that UTM zone with ``gsd_m`` metres per pixel. ``Area.save`` writes a real
GeoTIFF (readable by :class:`edge_geoloc.geo.GeoRaster`) plus the scene needed for rendering.

An area is a layout (style + seed) seen under a :class:`~edge_geoloc.sim.conditions.Condition`. The map is one
such area (its sensor applied to the orthophoto); :func:`capture_area` gives the same layout as a camera would
see it at another moment (another sun, season, changes), with the camera's sensor applied to each rendered view.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import rasterio

from edge_geoloc.config import from_dict
from edge_geoloc.geo import PatchGeoref, UtmZone, latlon_to_utm, utm_to_latlon, write_geotiff
from edge_geoloc.geo.geodesy import check_latlon
from edge_geoloc.sim.changes import changed_scene
from edge_geoloc.sim.conditions import LAYOUT, Condition, Light, Sensor, apply_sensor, get_condition
from edge_geoloc.sim.layout import Scene, generate_scene
from edge_geoloc.sim.ortho import paint_ortho
from edge_geoloc.sim.styles import Style, get_style

log = logging.getLogger(__name__)

MAX_AREA_PX = 12000 * 12000  # ~1.7 GB of scene + ortho arrays; beyond this, use a larger gsd_m or several areas
_NPZ_DATE = (2020, 1, 1, 0, 0, 0)  # fixed zip timestamps so that scene.npz is byte-identical per seed


@dataclass(eq=False)
class Area:
    """A generated area. See the module docstring for the frames; ``scene`` holds what renderers need."""

    ortho: np.ndarray  # (H, W, 3) uint8 RGB, north-up
    scene: Scene
    style: Style
    seed: int
    size_m: float
    gsd_m: float
    center_lat_deg: float
    center_lon_deg: float
    sun_azimuth_rad: float
    sun_elevation_rad: float
    ground_alt_m: float = 0.0  # ellipsoidal height of the (flat) ground
    source_dir: str | None = None  # the folder it was saved to / loaded from, if any
    condition: Condition = LAYOUT  # light, season, change and sensor of this capture
    view_sensor: Sensor | None = None  # set on capture areas: applied to every view rendered from them
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def style_name(self) -> str:
        return self.style.name

    @property
    def zone(self) -> UtmZone:
        return latlon_to_utm(self.center_lat_deg, self.center_lon_deg)[2]

    @property
    def center_utm(self) -> tuple[float, float]:
        east, north, _ = latlon_to_utm(self.center_lat_deg, self.center_lon_deg)
        return east, north

    @property
    def georef(self) -> PatchGeoref:
        east, north = self.center_utm
        half = self.size_m / 2
        n = self.ortho.shape[0]
        return PatchGeoref(self.zone.epsg, (self.gsd_m, 0.0, east - half, 0.0, -self.gsd_m, north + half), n, n)

    def local_to_latlon(self, east_m, north_m):
        """(lat_deg, lon_deg) of local metres east/north of the centre."""
        ce, cn = self.center_utm
        return utm_to_latlon(np.asarray(east_m) + ce, np.asarray(north_m) + cn, self.zone)

    def latlon_to_local(self, lat_deg, lon_deg):
        """(east_m, north_m) of WGS84 points in the local frame."""
        east, north, _ = latlon_to_utm(lat_deg, lon_deg, self.zone)
        ce, cn = self.center_utm
        return east - ce, north - cn

    def local_to_pixel(self, east_m, north_m):
        """Continuous (row, col) in the orthophoto (corner convention)."""
        half = self.size_m / 2
        return (half - np.asarray(north_m)) / self.gsd_m, (np.asarray(east_m) + half) / self.gsd_m

    def pixel_to_local(self, row, col):
        """(east_m, north_m) of continuous orthophoto pixel coordinates."""
        half = self.size_m / 2
        return np.asarray(col) * self.gsd_m - half, half - np.asarray(row) * self.gsd_m

    def ortho_level(self, level: int) -> np.ndarray:
        """The orthophoto shrunk by 2**level (area-averaged), cached; level 0 is the ortho itself."""
        if level <= 0:
            return self.ortho
        key = ("ortho", level)
        if key not in self._cache:
            prev = self.ortho_level(level - 1)
            self._cache[key] = cv2.resize(prev, (max(1, prev.shape[1] // 2), max(1, prev.shape[0] // 2)),
                                          interpolation=cv2.INTER_AREA)
        return self._cache[key]

    def aerial_patch(self, east_m: float, north_m: float, size_m: float, out_px: int) -> tuple[np.ndarray, PatchGeoref]:
        """A north-up square orthophoto patch ``size_m`` wide centred on a local point, at ``out_px`` pixels."""
        if not (size_m > 0 and out_px > 0):
            raise ValueError(f"aerial_patch needs size_m > 0 and out_px > 0, got size_m={size_m}, out_px={out_px}")
        scale_px = size_m / self.gsd_m / out_px  # ortho pixels per output pixel
        level = max(0, int(math.floor(math.log2(scale_px)))) if scale_px > 1 else 0
        src = self.ortho_level(level)
        row0, col0 = self.local_to_pixel(east_m - size_m / 2, north_m + size_m / 2)
        s = scale_px / 2**level
        r0, c0 = row0 / 2**level, col0 / 2**level
        matrix = np.array([[s, 0.0, c0 + 0.5 * s - 0.5], [0.0, s, r0 + 0.5 * s - 0.5]])
        image = cv2.warpAffine(src, matrix, (out_px, out_px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        ce, cn = self.center_utm
        m = size_m / out_px
        georef = PatchGeoref(self.zone.epsg, (m, 0.0, ce + east_m - size_m / 2, 0.0, -m, cn + north_m + size_m / 2),
                             out_px, out_px)
        return image, georef

    def save(self, out_dir: str | Path) -> Path:
        """Write ``ortho.tif`` (GeoTIFF), ``scene.npz`` and ``area.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_geotiff(out / "ortho.tif", self.ortho, self.georef)
        _write_npz(out / "scene.npz", height_m=self.scene.height_m, classes=self.scene.classes,
                   building_id=self.scene.building_id, buildings=self.scene.buildings)
        (out / "area.json").write_text(json.dumps(self.metadata(), indent=2), encoding="utf-8")
        self.source_dir = str(out)
        return out

    def metadata(self) -> dict:
        """What ``area.json`` holds: everything but the arrays."""
        return {"format": "edge_geoloc.sim.area", "version": 1, "style": asdict(self.style), "seed": self.seed,
                "size_m": self.size_m, "gsd_m": self.gsd_m, "center_lat_deg": self.center_lat_deg,
                "center_lon_deg": self.center_lon_deg, "utm_epsg": self.zone.epsg,
                "center_utm_m": list(self.center_utm), "sun_azimuth_rad": self.sun_azimuth_rad,
                "sun_elevation_rad": self.sun_elevation_rad, "ground_alt_m": self.ground_alt_m,
                "num_buildings": int(len(self.scene.buildings)), "condition": asdict(self.condition)}

    def view_rng(self) -> np.random.Generator:
        """The generator of this capture's per-view sensor noise (deterministic sequence per area object)."""
        if "view_rng" not in self._cache:
            self._cache["view_rng"] = self.condition.rng(self.seed, self.style.name, "views")
        return self._cache["view_rng"]

    def record_view(self, image: np.ndarray, m_per_px: float) -> np.ndarray:
        """A rendered view as this capture's camera records it (unchanged on a map area)."""
        if self.view_sensor is None:
            return image
        return apply_sensor(image, self.view_sensor, m_per_px, self.view_rng())


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps (byte-identical output)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_NPZ_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_area(area_dir: str | Path) -> Area:
    """Read an area written by :meth:`Area.save`."""
    root = Path(area_dir)
    meta_path = root / "area.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{root} is not a synthetic area folder (no area.json); create one with "
                                f"`edge-geoloc sim area --out {root}`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    with rasterio.open(root / "ortho.tif") as raster:
        ortho = np.moveaxis(raster.read((1, 2, 3)), 0, -1)
    with np.load(root / "scene.npz", allow_pickle=False) as npz:
        scene = Scene(npz["height_m"], npz["classes"], npz["building_id"], npz["buildings"],
                      float(meta["gsd_m"]), float(meta["size_m"]))
    condition = from_dict(Condition, meta["condition"]) if "condition" in meta else LAYOUT
    return Area(np.ascontiguousarray(ortho), scene, from_dict(Style, meta["style"]), int(meta["seed"]),
                float(meta["size_m"]), float(meta["gsd_m"]), float(meta["center_lat_deg"]),
                float(meta["center_lon_deg"]), float(meta["sun_azimuth_rad"]), float(meta["sun_elevation_rad"]),
                float(meta.get("ground_alt_m", 0.0)), str(root), condition=condition)


def generate_area(style: str | Style, seed: int, size_m: float = 1000.0, gsd_m: float = 0.5,
                  center_lat_deg: float = 52.0, center_lon_deg: float = 4.36,
                  condition: str | Condition | None = None) -> Area:
    """Generate a deterministic synthetic area: the layout of (style, seed) as a map under ``condition``
    (default: the layout's own look). Same arguments -> same arrays and files."""
    return _render_area(get_style(style), seed, size_m, gsd_m, center_lat_deg, center_lon_deg,
                        get_condition(condition), sensor_on_ortho=True)


def capture_area(area: Area, condition: str | Condition | None) -> Area:
    """The layout of ``area`` as a camera sees it under ``condition``: its own sun, season and changes in the
    scene and orthophoto, and the condition's sensor applied to each view rendered from it
    (:meth:`Area.record_view`). ``None`` or the map's own condition returns ``area`` itself (the easy case)."""
    condition = get_condition(condition)
    if condition == area.condition:
        return area
    key = ("capture", condition)
    if key not in area._cache:
        area._cache[key] = _render_area(area.style, area.seed, area.size_m, area.gsd_m, area.center_lat_deg,
                                        area.center_lon_deg, condition, sensor_on_ortho=False)
    return area._cache[key]


def _render_area(style: Style, seed: int, size_m: float, gsd_m: float, lat: float, lon: float,
                 condition: Condition, sensor_on_ortho: bool) -> Area:
    _check_area_args(size_m, gsd_m, lat, lon)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(style.name.encode())])
    sun_az, sun_el = _sun(style, condition.light, rng)
    scene, roads = generate_scene(style, rng, size_m, gsd_m)
    crng = condition.rng(seed, style.name, "scene")
    scene, cars = changed_scene(scene, style, condition.change, crng)
    ortho = paint_ortho(scene, style, rng, roads, sun_az, sun_el, condition, cars, crng)
    if sensor_on_ortho:
        ortho = apply_sensor(ortho, condition.sensor, gsd_m, condition.rng(seed, style.name, "map_sensor"))
    log.info("generated %s area seed=%d under %r: %.0f m at %.2f m/px, %d buildings", style.name, seed,
             condition.name, size_m, gsd_m, len(scene.buildings))
    return Area(ortho, scene, style, int(seed), float(size_m), float(gsd_m), float(lat), float(lon), sun_az, sun_el,
                condition=condition, view_sensor=None if sensor_on_ortho else condition.sensor)


def _sun(style: Style, light: Light, rng: np.random.Generator) -> tuple[float, float]:
    """Sun azimuth/elevation (radians): the condition's, else the style's jittered per seed. Both jitters are
    always drawn, so the layout generator advances the same way under every condition."""
    az_jitter, el_jitter = rng.uniform(-15, 15), rng.uniform(-5, 5)
    azimuth = light.sun_azimuth_deg if light.sun_azimuth_deg is not None else style.sun_azimuth_deg + az_jitter
    elevation = (light.sun_elevation_deg if light.sun_elevation_deg is not None
                 else float(np.clip(style.sun_elevation_deg + el_jitter, 5, 89)))
    return math.radians(azimuth % 360.0), math.radians(elevation)


def _check_area_args(size_m: float, gsd_m: float, lat: float, lon: float) -> None:
    if not (math.isfinite(gsd_m) and 0.05 <= gsd_m <= 10.0):
        raise ValueError(f"gsd_m must be in [0.05, 10] metres per pixel, got {gsd_m}")
    if not (math.isfinite(size_m) and size_m >= 50 * gsd_m):
        raise ValueError(f"size_m must be at least 50 pixels ({50 * gsd_m} m at gsd_m={gsd_m}), got {size_m}")
    if (size_m / gsd_m) ** 2 > MAX_AREA_PX:
        raise ValueError(f"size_m={size_m} at gsd_m={gsd_m} gives {int(size_m / gsd_m)}^2 pixels, more than the "
                         f"{int(math.sqrt(MAX_AREA_PX))}^2 that fit in memory; raise gsd_m or lower size_m")
    check_latlon(lat, lon)
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"center_lat_deg must be inside UTM coverage [-80, 84], got {lat}")
