"""``edge-geoloc sim area|views|university|vigor|flight``: synthetic areas, example views, datasets, flights.

Every command takes ``--config YAML`` (see ``configs/sim_*.yaml``) and ``key=value`` overrides, and writes the
resolved config next to its output. Examples::

    edge-geoloc sim area --out runs/areas/source_1 style=source seed=1
    edge-geoloc sim views --area runs/areas/source_1 --out runs/views
    edge-geoloc sim university --area runs/areas/source_1 --out runs/U1652 n_train=50
    edge-geoloc sim vigor --area A1 --area A2 --area A3 --area A4 --out runs/VIGOR   # NewYork..Chicago
    edge-geoloc sim flight --area runs/areas/target_2 --out runs/flight --gnss-preset urban_multipath kind=car
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.config import ConfigError, add_config_arguments, config_from_args, save_config, to_dict
from edge_geoloc.sim.area import Area, generate_area, load_area
from edge_geoloc.sim.camera import DronePose, PinholeCamera
from edge_geoloc.sim.configs import AreaConfig, UniversityConfig, VigorConfig
from edge_geoloc.sim.datasets import write_image, write_university_tree, write_vigor_tree
from edge_geoloc.sim.flight import FlightConfig, simulate_flight
from edge_geoloc.sim.gnss import GNSS_PRESETS
from edge_geoloc.sim.ground import render_ground_panorama, render_ground_pinhole, sample_street_points
from edge_geoloc.sim.render import render_drone_view


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-geoloc sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    area = sub.add_parser("area", help="generate an area: ortho.tif (GeoTIFF) + scene.npz + area.json + preview")
    add_config_arguments(area)
    for name, helptext in (("views", "render example drone/ground views of an area (PNG)"),
                           ("university", "write a University-1652-like dataset"),
                           ("vigor", "write a VIGOR-like dataset (one city per --area)"),
                           ("flight", "simulate a drone flight or car drive with GNSS (NMEA)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--area", action="append", required=True, help="area folder (repeatable for datasets)")
        if name != "views":
            add_config_arguments(p)
        if name == "flight":
            p.add_argument("--gnss-preset", choices=sorted(GNSS_PRESETS), help="start from a GNSS noise preset")
    for p in sub.choices.values():
        p.add_argument("--out", required=True, help="output folder")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    started = time.perf_counter()
    try:
        handler = {"area": _cmd_area, "views": _cmd_views, "university": _cmd_university, "vigor": _cmd_vigor,
                   "flight": _cmd_flight}[args.command]
        handler(args, out)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"edge-geoloc sim {args.command}: error: {err}")
        return 2
    print(f"done in {time.perf_counter() - started:.1f} s -> {out}")
    return 0


def _load_areas(paths: list[str]) -> list[Area]:
    return [load_area(p) for p in paths]


def _cmd_area(args: argparse.Namespace, out: Path) -> None:
    cfg = config_from_args(AreaConfig, args)
    area = generate_area(cfg.style, cfg.seed, cfg.size_m, cfg.gsd_m, cfg.center_lat_deg, cfg.center_lon_deg,
                         cfg.condition)
    area.save(out)
    save_config(cfg, out / "config.yaml")
    preview = cv2.resize(area.ortho, (1024, 1024), interpolation=cv2.INTER_AREA)
    write_image(out / "preview.png", preview)
    print(f"area {cfg.style}/{cfg.seed}: {cfg.size_m:.0f} m at {cfg.gsd_m} m/px, UTM EPSG:{area.zone.epsg}, "
          f"{len(area.scene.buildings)} buildings")


def _cmd_views(args: argparse.Namespace, out: Path) -> None:
    area = _load_areas(args.area)[0]
    camera = PinholeCamera(256, 256, 60.0)
    rng = np.random.default_rng(0)
    east, north = sample_street_points(area, 1, rng, margin_m=min(100.0, area.size_m / 4))[0]
    views = {
        "drone_nadir.png": render_drone_view(area, DronePose(east, north, 120.0, 0.0), camera),
        "drone_oblique.png": render_drone_view(area, DronePose(east, north - 90, 90.0, 0.0, math.radians(45)), camera),
        "drone_oblique_photometric.png": render_drone_view(
            area, DronePose(east + 60, north, 70.0, math.radians(250), math.radians(35)), camera, rng),
        "ground_panorama.png": render_ground_panorama(area, east, north, 0.0, width_px=768, height_px=384),
        "ground_pinhole.png": render_ground_pinhole(area, east, north, 0.0, PinholeCamera(384, 256, 90.0)),
        "ortho_crop.png": area.aerial_patch(east, north, 200.0, 256)[0],
    }
    for name, image in views.items():
        write_image(out / name, image)
    print(f"wrote {len(views)} views around ({east:.1f}, {north:.1f}) m to {out}")


def _cmd_university(args: argparse.Namespace, out: Path) -> None:
    cfg = config_from_args(UniversityConfig, args)
    write_university_tree(out, _load_areas(args.area), **to_dict(cfg) | {"alt_range_m": cfg.alt_range_m})
    save_config(cfg, out / "config.yaml")


def _cmd_vigor(args: argparse.Namespace, out: Path) -> None:
    cfg = config_from_args(VigorConfig, args)
    write_vigor_tree(out, _load_areas(args.area), **to_dict(cfg) | {"pano_px": cfg.pano_px})
    save_config(cfg, out / "config.yaml")


def _cmd_flight(args: argparse.Namespace, out: Path) -> None:
    cfg = config_from_args(FlightConfig, args)
    if args.gnss_preset:
        explicit = {k.split("=", 1)[0].removeprefix("gnss.") for k in [*args.overrides, *args.extra_overrides]
                    if k.startswith("gnss.")}
        preset = GNSS_PRESETS[args.gnss_preset]
        keep = {k: getattr(cfg.gnss, k) for k in explicit}
        cfg = dataclasses.replace(cfg, gnss=dataclasses.replace(preset, **keep))
    flight = simulate_flight(_load_areas(args.area)[0], out, cfg)
    print(f"{cfg.kind} flight: {len(flight.frame_paths)} frames, {len(flight.events)} GNSS events")
