"""Simulated flights (drone) and drives (car): trajectory, rendered frames, GNSS as NMEA, ground truth.

Folder written by :func:`simulate_flight`::

    frames/<index:06d>.jpg   one camera frame per truth row
    truth.csv                stamp_s,lat_deg,lon_deg,alt_m,east_m,north_m,alt_agl_m,heading_rad,pitch_rad
    gnss.nmea                GGA, RMC, GST per GNSS epoch (CRLF lines, checksums)
    gnss.csv                 (extra) per epoch: truth, reported fix, true error, reported sigmas, validity
    sensors.csv              per frame, what the vehicle measures itself: stamp_s,heading_rad (compass/IMU),
                             altitude_agl_m (baro/lidar; empty for a car), with noise (declared in flight.json)
    flight.json              area folder, camera, rates, configs, events (outages, multipath), ``sensors``
    config.yaml              the resolved FlightConfig

Times are UNIX seconds (UTC). Drone trajectories are smooth loops through random waypoints; car trajectories
follow the road network (shortest paths on a 2 m road grid between random road points).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edge_geoloc.config import save_config, to_dict
from edge_geoloc.sim.area import Area, capture_area
from edge_geoloc.sim.camera import DronePose, PinholeCamera
from edge_geoloc.sim.datasets import write_image
from edge_geoloc.sim.gnss import (
    RMC_COURSE_SIGMA_RAD,
    RMC_SPEED_SIGMA_MPS,
    GnssNoiseConfig,
    format_gga,
    format_gst,
    format_rmc,
    simulate_gnss_errors,
)
from edge_geoloc.sim.ground import render_ground_panorama, render_ground_pinhole
from edge_geoloc.sim.layout import ROAD
from edge_geoloc.sim.render import render_drone_view

log = logging.getLogger(__name__)

SENSOR_COLUMNS = ("stamp_s", "heading_rad", "altitude_agl_m")
TRUTH_COLUMNS = ("stamp_s", "lat_deg", "lon_deg", "alt_m", "east_m", "north_m", "alt_agl_m", "heading_rad",
                 "pitch_rad")


@dataclass(frozen=True)
class FlightConfig:
    """How to fly (or drive) through an area and what to record."""

    kind: Literal["drone", "car"] = "drone"
    duration_s: float = 60.0
    speed_mps: float = 10.0
    altitude_agl_m: float = 100.0
    pitch_deg: float = 90.0
    frame_rate_hz: float = 2.0
    width_px: int = 256
    height_px: int = 256
    hfov_deg: float = 60.0
    camera_height_m: float = 1.7
    camera: Literal["pinhole", "panorama"] = "pinhole"  # a car's camera: front pinhole or 360 deg panorama
    start_utc: str = "2024-06-01T10:00:00Z"
    photometric: bool = False
    seed: int = 0
    condition: str | None = None  # the capture condition (name or YAML); None: the map's own condition
    heading_sigma_deg: float = 2.0  # compass/IMU heading noise (Gaussian, per frame) in sensors.csv
    altitude_sigma_m: float = 1.0  # baro/lidar height-above-ground noise (Gaussian, per frame)
    gnss: GnssNoiseConfig = field(default_factory=GnssNoiseConfig)

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and self.speed_mps > 0 and 0 < self.frame_rate_hz <= 60):
            raise ValueError(f"duration_s and speed_mps must be > 0 and frame_rate_hz in (0, 60], got "
                             f"{self.duration_s}, {self.speed_mps}, {self.frame_rate_hz}")
        if self.kind == "drone" and self.altitude_agl_m <= 0:
            raise ValueError(f"altitude_agl_m must be > 0 for a drone, got {self.altitude_agl_m}")
        if not 1.0 <= self.pitch_deg <= 90.0:
            raise ValueError(f"pitch_deg (camera depression) must be in [1, 90], got {self.pitch_deg}")
        if self.heading_sigma_deg < 0 or self.altitude_sigma_m < 0:
            raise ValueError(f"heading_sigma_deg and altitude_sigma_m must be >= 0, got {self.heading_sigma_deg}, "
                             f"{self.altitude_sigma_m}")
        PinholeCamera(self.width_px, self.height_px, self.hfov_deg)  # validates the camera
        if self.camera == "panorama" and (self.kind != "car" or self.width_px != 2 * self.height_px):
            raise ValueError(f"a panorama camera needs kind car and width_px = 2 * height_px (equirectangular), "
                             f"got kind {self.kind}, {self.width_px}x{self.height_px}")
        _ = self.start_stamp_s  # validates the date

    @property
    def start_stamp_s(self) -> float:
        try:
            return dt.datetime.fromisoformat(self.start_utc.replace("Z", "+00:00")).timestamp()
        except ValueError as err:
            raise ValueError(f"start_utc must be ISO 8601 like 2024-06-01T10:00:00Z, got {self.start_utc!r}") from err


@dataclass
class Flight:
    """A flight folder: truth per frame (arrays), and the metadata in ``flight.json``."""

    out_dir: Path
    truth: dict[str, np.ndarray]
    meta: dict

    @property
    def frame_paths(self) -> list[Path]:
        return [self.out_dir / "frames" / f"{i:06d}.jpg" for i in range(len(self.truth["stamp_s"]))]

    @property
    def nmea_path(self) -> Path:
        return self.out_dir / "gnss.nmea"

    @property
    def events(self) -> list[dict]:
        return self.meta["events"]

    @property
    def sensors(self) -> dict[str, np.ndarray] | None:
        """Per-frame on-board measurements (``sensors.csv``: heading_rad, altitude_agl_m), if declared."""
        name = self.meta.get("sensors", {}).get("file")
        return _read_csv_columns(self.out_dir / name) if name else None


def load_flight(flight_dir: str | Path) -> Flight:
    """Read a folder written by :func:`simulate_flight`."""
    root = Path(flight_dir)
    if not (root / "flight.json").is_file():
        raise FileNotFoundError(f"{root} has no flight.json; create a flight with `edge-geoloc sim flight`")
    meta = json.loads((root / "flight.json").read_text(encoding="utf-8"))
    return Flight(root, _read_csv_columns(root / "truth.csv"), meta)


def _read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0] if rows else TRUTH_COLUMNS
    return {k: np.array([float(r[k]) if r[k] else math.nan for r in rows]) for k in columns}  # empty cell: NaN


# ------------------------------------------------------------------------------------------------ paths


def drone_path(area: Area, length_m: float, rng: np.random.Generator, margin_m: float | None = None) -> np.ndarray:
    """(K, 2) dense local points of a smooth closed loop through random waypoints (repeated if needed),
    ``margin_m`` (default: 80 m, or a fifth of a small area) inside the border."""
    margin_m = min(80.0, 0.2 * area.size_m) if margin_m is None else margin_m
    half = area.size_m / 2 - margin_m
    if half <= 20:
        raise ValueError(f"area of {area.size_m} m is too small for a drone loop {margin_m} m inside its border")
    k = int(rng.integers(5, 8))
    angles = np.sort(rng.uniform(0, 2 * math.pi, k))
    radius = rng.uniform(0.7, 1.0, k) * half
    way = np.stack([radius * np.sin(angles), radius * np.cos(angles)], -1)
    dense = _catmull_rom_loop(way, 64)
    loop_len = float(np.hypot(*np.diff(dense, axis=0).T).sum())
    repeats = int(math.ceil(length_m / loop_len)) + 1
    return np.concatenate([dense[:-1]] * repeats + [dense[-1:]])


def _catmull_rom_loop(points: np.ndarray, per_segment: int) -> np.ndarray:
    n = len(points)
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(n):
        p0, p1, p2, p3 = (points[(i + j) % n] for j in (-1, 0, 1, 2))
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(points[:1])
    return np.concatenate(out)


def car_path(area: Area, length_m: float, rng: np.random.Generator, cell_m: float = 2.0) -> np.ndarray:
    """(K, 2) local points along roads: chained shortest paths between random road cells, smoothed."""
    step = max(1, int(round(cell_m / area.gsd_m)))
    road = (area.scene.classes == ROAD).astype(np.uint8)
    n = road.shape[0] // step
    grid = cv2.resize(road[: n * step, : n * step], (n, n), interpolation=cv2.INTER_AREA) > 0.5
    cells = np.argwhere(grid[5:-5, 5:-5]) + 5
    if len(cells) < 10:
        raise ValueError(f"area {area.style_name}/{area.seed} has too few road cells for a car path")
    path = [tuple(cells[rng.integers(len(cells))])]
    total, failures = 0.0, 0
    while total < length_m:
        leg = _bfs(grid, path[-1], tuple(cells[rng.integers(len(cells))]))
        if len(leg) < 2:
            failures += 1
            if failures > 50:
                raise ValueError(f"no connected road route of {length_m:.0f} m in area {area.style_name}/"
                                 f"{area.seed}; use a shorter duration_s or another area seed")
            continue
        path += leg[1:]
        total += (len(leg) - 1) * cell_m
    rc = np.asarray(path, np.float64) + 0.5
    kernel = np.ones(5) / 5
    rc = np.stack([np.convolve(np.pad(rc[:, i], 2, mode="edge"), kernel, "valid") for i in range(2)], -1)
    east, north = area.pixel_to_local(rc[:, 0] * step, rc[:, 1] * step)
    return np.stack([east, north], -1)


def _bfs(grid: np.ndarray, start: tuple, goal: tuple) -> list[tuple]:
    """Shortest 8-connected path on a boolean grid (empty if unreachable)."""
    prev = {start: None}
    queue = deque([start])
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    h, w = grid.shape
    while queue:
        cur = queue.popleft()
        if cur == goal:
            break
        for dr, dc in moves:
            nxt = (cur[0] + dr, cur[1] + dc)
            if 0 <= nxt[0] < h and 0 <= nxt[1] < w and grid[nxt] and nxt not in prev:
                prev[nxt] = cur
                queue.append(nxt)
    if goal not in prev:
        return []
    out = [goal]
    while prev[out[-1]] is not None:
        out.append(prev[out[-1]])
    return out[::-1]


def sample_path(path: np.ndarray, distance_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) and headings (N,) at arc lengths along a polyline (heading = direction of travel)."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    keep = np.r_[True, seg > 1e-6]
    path = path[keep]
    s = np.r_[0.0, np.cumsum(np.hypot(*np.diff(path, axis=0).T))]
    d = np.clip(distance_m, 0, s[-1])
    points = np.stack([np.interp(d, s, path[:, 0]), np.interp(d, s, path[:, 1])], -1)
    ahead = np.stack([np.interp(d + 3.0, s, path[:, 0]), np.interp(d + 3.0, s, path[:, 1])], -1)
    behind = np.stack([np.interp(d - 3.0, s, path[:, 0]), np.interp(d - 3.0, s, path[:, 1])], -1)
    heading = np.arctan2(ahead[:, 0] - behind[:, 0], ahead[:, 1] - behind[:, 1]) % (2 * math.pi)
    return points, heading


# ------------------------------------------------------------------------------------------------ flight


def simulate_flight(area: Area, out_dir: str | Path, config: FlightConfig | None = None) -> Flight:
    """Fly (or drive) through ``area``, render frames, simulate GNSS, and write the flight folder."""
    cfg = config or FlightConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if area.source_dir is None:
        area.save(out / "area")
    rng = np.random.default_rng(cfg.seed)
    length = cfg.speed_mps * cfg.duration_s + 10.0
    path = drone_path(area, length, rng) if cfg.kind == "drone" else car_path(area, length, rng)
    t0 = cfg.start_stamp_s
    frame_t = np.arange(0.0, cfg.duration_s + 1e-9, 1.0 / cfg.frame_rate_hz)
    truth = _truth_rows(area, cfg, path, frame_t, t0)
    scene_now = capture_area(area, cfg.condition)
    _write_frames(scene_now, cfg, truth, out / "frames", rng)
    _write_csv_rows(out / "truth.csv", TRUTH_COLUMNS, truth)
    _write_csv_rows(out / "sensors.csv", SENSOR_COLUMNS, _sensor_rows(cfg, truth))
    gnss_t = np.arange(0.0, cfg.duration_s + 1e-9, 1.0 / cfg.gnss.rate_hz)
    events = _write_gnss(area, cfg, path, gnss_t, t0, out, rng)
    meta = {"format": "edge_geoloc.sim.flight", "version": 1, "area_dir": str(Path(area.source_dir).resolve()),
            "area": {"style": area.style_name, "seed": area.seed, "size_m": area.size_m, "gsd_m": area.gsd_m,
                     "center_lat_deg": area.center_lat_deg, "center_lon_deg": area.center_lon_deg,
                     "utm_epsg": area.zone.epsg},
            "kind": cfg.kind, "camera": _camera_meta(cfg),
            "frame_rate_hz": cfg.frame_rate_hz, "gnss_rate_hz": cfg.gnss.rate_hz, "start_utc": cfg.start_utc,
            "num_frames": len(truth["stamp_s"]), "gnss_noise": to_dict(cfg.gnss), "config": to_dict(cfg),
            "events": events, "sensors": _sensors_meta(cfg),
            "conditions": {"map": area.condition.name, "capture": scene_now.condition.name}}
    (out / "flight.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    save_config(cfg, out / "config.yaml")
    log.info("wrote %s flight of %d frames to %s (%d GNSS events)", cfg.kind, len(frame_t), out, len(events))
    return load_flight(out)


def _camera_meta(cfg: FlightConfig) -> dict:
    """``flight.json`` ``camera``: a pinhole's size, field of view and K; a panorama's size only (360 x 180 deg)."""
    if cfg.camera == "panorama":
        return {"model": "panorama", "width_px": cfg.width_px, "height_px": cfg.height_px}
    return {"model": "pinhole", "width_px": cfg.width_px, "height_px": cfg.height_px, "hfov_deg": cfg.hfov_deg,
            "K": PinholeCamera(cfg.width_px, cfg.height_px, cfg.hfov_deg).K.tolist()}


def _truth_rows(area: Area, cfg: FlightConfig, path: np.ndarray, rel_t: np.ndarray, t0: float) -> dict:
    points, heading = sample_path(path, rel_t * cfg.speed_mps)
    agl = cfg.altitude_agl_m if cfg.kind == "drone" else cfg.camera_height_m
    pitch = math.radians(cfg.pitch_deg) if cfg.kind == "drone" else 0.0
    lat, lon = area.local_to_latlon(points[:, 0], points[:, 1])
    n = len(rel_t)
    return {"stamp_s": t0 + rel_t, "lat_deg": np.atleast_1d(lat), "lon_deg": np.atleast_1d(lon),
            "alt_m": np.full(n, area.ground_alt_m + agl), "east_m": points[:, 0], "north_m": points[:, 1],
            "alt_agl_m": np.full(n, agl), "heading_rad": heading, "pitch_rad": np.full(n, pitch)}


def _sensors_meta(cfg: FlightConfig) -> dict:
    """``flight.json`` ``sensors``: the measurement file and its noise (no height measured by a car)."""
    return {"file": "sensors.csv", "columns": list(SENSOR_COLUMNS), "heading_sigma_deg": cfg.heading_sigma_deg,
            "altitude_agl_sigma_m": cfg.altitude_sigma_m if cfg.kind == "drone" else None}


def _sensor_rows(cfg: FlightConfig, truth: dict) -> dict:
    """Per-frame heading and height-above-ground measurements: truth + Gaussian noise from their own seeded
    stream (the frames and GNSS draw from another, so they do not change with these settings)."""
    rng = np.random.default_rng([cfg.seed, 0x5E45])
    n = len(truth["stamp_s"])
    heading = (truth["heading_rad"] + rng.normal(0.0, math.radians(cfg.heading_sigma_deg), n)) % (2 * math.pi)
    altitude = np.maximum(truth["alt_agl_m"] + rng.normal(0.0, cfg.altitude_sigma_m, n), 0.1)
    if cfg.kind != "drone":
        altitude = np.full(n, math.nan)  # a car measures no height above ground
    return {"stamp_s": truth["stamp_s"], "heading_rad": heading, "altitude_agl_m": altitude}


def _write_frames(area: Area, cfg: FlightConfig, truth: dict, folder: Path, rng: np.random.Generator) -> None:
    camera = PinholeCamera(cfg.width_px, cfg.height_px, cfg.hfov_deg)
    photo_rng = rng if cfg.photometric else None
    for i in range(len(truth["stamp_s"])):
        east, north, heading = truth["east_m"][i], truth["north_m"][i], truth["heading_rad"][i]
        if cfg.kind == "drone":
            pose = DronePose(east, north, truth["alt_agl_m"][i], heading, truth["pitch_rad"][i])
            image = render_drone_view(area, pose, camera, photo_rng)
        elif cfg.camera == "panorama":
            image = render_ground_panorama(area, east, north, heading, cfg.camera_height_m, cfg.width_px,
                                           cfg.height_px)
        else:
            image = render_ground_pinhole(area, east, north, heading, camera, cfg.camera_height_m)
        write_image(folder / f"{i:06d}.jpg", image)


def _write_csv_rows(path: Path, columns: tuple[str, ...], data: dict) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(len(data[columns[0]])):
            writer.writerow([_fmt(data[c][i]) for c in columns])


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return ""
    return repr(round(float(value), 9)) if isinstance(value, (float, np.floating)) else str(value)


def _write_gnss(area: Area, cfg: FlightConfig, path: np.ndarray, rel_t: np.ndarray, t0: float, out: Path,
                rng: np.random.Generator) -> list[dict]:
    """Simulate the receiver at its own rate; write ``gnss.nmea`` and ``gnss.csv``; return the events."""
    truth = _truth_rows(area, cfg, path, rel_t, t0)
    track = simulate_gnss_errors(truth["stamp_s"], cfg.gnss, rng)
    east = truth["east_m"] + track.error_enu_m[:, 0]
    north = truth["north_m"] + track.error_enu_m[:, 1]
    alt = truth["alt_m"] + track.error_enu_m[:, 2]
    lat, lon = (np.atleast_1d(v) for v in area.local_to_latlon(east, north))
    speed = cfg.speed_mps + rng.normal(0, RMC_SPEED_SIGMA_MPS, len(rel_t))
    course = np.degrees(truth["heading_rad"] + rng.normal(0, RMC_COURSE_SIGMA_RAD, len(rel_t)))
    lines = []
    for k, stamp in enumerate(truth["stamp_s"]):
        talker, sats = cfg.gnss.talker, int(track.num_satellites[k])
        if track.valid[k]:
            lines.append(format_gga(stamp, lat[k], lon[k], alt[k], 1, sats, track.hdop[k], talker))
            lines.append(format_rmc(stamp, lat[k], lon[k], speed[k], course[k], talker))
            lines.append(format_gst(stamp, *track.sigma_enu_m[k], talker=talker))
        else:
            lines.append(format_gga(stamp, None, None, None, 0, 0, None, talker))
            lines.append(format_rmc(stamp, None, None, 0.0, 0.0, talker))
    with (out / "gnss.nmea").open("w", encoding="ascii", newline="") as f:
        f.write("".join(f"{ln}\r\n" for ln in lines))
    columns = ("stamp_s", "valid", "lat_deg", "lon_deg", "alt_m", "true_lat_deg", "true_lon_deg", "error_east_m",
               "error_north_m", "error_up_m", "sigma_east_m", "sigma_north_m", "sigma_up_m", "hdop", "num_satellites")
    data = {"stamp_s": truth["stamp_s"], "valid": track.valid.astype(int), "lat_deg": lat, "lon_deg": lon,
            "alt_m": alt, "true_lat_deg": truth["lat_deg"], "true_lon_deg": truth["lon_deg"],
            "error_east_m": track.error_enu_m[:, 0], "error_north_m": track.error_enu_m[:, 1],
            "error_up_m": track.error_enu_m[:, 2], "sigma_east_m": track.sigma_enu_m[:, 0],
            "sigma_north_m": track.sigma_enu_m[:, 1], "sigma_up_m": track.sigma_enu_m[:, 2], "hdop": track.hdop,
            "num_satellites": track.num_satellites}
    _write_csv_rows(out / "gnss.csv", columns, data)
    return track.events
