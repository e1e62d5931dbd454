"""``edge-geoloc run``: replay a flight (frames + NMEA) through the pipeline; trajectory, GeoJSON, error table.

Examples::

    edge-geoloc run --flight runs/flight_a --models models/ --index index/ --out runs/replay_a
    edge-geoloc run --flight runs/flight_a --models models/ --realtime          # paced like the camera
    edge-geoloc run --flight runs/flight_a --models models/ --set pipeline.min_confidence=0.4

``--models DIR`` holds ``retrieval.*`` (drone branch) and ``localizer.*`` (``.engine``, ``.onnx`` with its ``.json``
sidecar, or ``.safetensors``); without ``--index`` the index is ``DIR/index`` if present, else built from the
flight's area orthophoto (``flight.json`` -> ``area_dir``/``ortho.tif``) into ``OUT/index`` with
``retrieval_satellite.*`` (the satellite branch) when present, else ``retrieval.*`` (shared weights).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

from edge_geoloc.config import ConfigError, add_config_arguments, config_from_args, save_config

log = logging.getLogger(__name__)
MODEL_SUFFIXES = (".engine", ".onnx", ".safetensors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-geoloc run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flight", required=True, type=Path, help="flight folder (frames/, gnss.nmea, ...)")
    parser.add_argument("--models", required=True, type=Path, help="folder with retrieval.* and localizer.*")
    parser.add_argument("--index", type=Path, help="tile index folder (edge-geoloc build-index)")
    parser.add_argument("--ortho", type=Path, nargs="+", help="orthophoto(s) to build the index from if needed")
    parser.add_argument("--out", type=Path, help="output folder (default: FLIGHT/replay)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="pace frames at their stamps (drops late frames)")
    pace.add_argument("--speed", type=float, help="pace at SPEED x real time")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--max-sensor-gap-s", type=float, default=1.0, help="heading / height further than this "
                        "from a measurement are left unknown (counted as sensor gaps)")
    add_config_arguments(parser, default_config=None)
    return parser


def find_model(models_dir: Path, stem: str) -> Path:
    """``DIR/<stem>.engine`` / ``.onnx`` / ``.safetensors`` (first found), with a clear error otherwise."""
    for suffix in MODEL_SUFFIXES:
        hits = sorted(models_dir.glob(f"{stem}{suffix}")) + sorted(models_dir.glob(f"{stem}.*{suffix}"))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no {stem} model in {models_dir}: expected {stem}.onnx (+ {stem}.json), "
                            f"{stem}.<precision>.engine or {stem}.safetensors (see `edge-geoloc export`)")


def resolve_index(args: argparse.Namespace, flight_meta: dict, retrieval: Path, out: Path, cfg) -> Path:
    """The index folder to use, building one from the flight's orthophoto when none exists."""
    if args.index is not None:
        return args.index
    if (args.models / "index" / "manifest.json").is_file():
        return args.models / "index"
    orthos = args.ortho or _flight_ortho(args.flight, flight_meta)
    from edge_geoloc.runtime.index_cli import build

    with contextlib.suppress(FileNotFoundError):
        retrieval = find_model(args.models, "retrieval_satellite")
    log.info("no --index given: building one from %s with %s into %s", [str(o) for o in orthos], retrieval.name,
             out / "index")
    build(orthos, retrieval, out / "index", cfg)
    return out / "index"


def _flight_ortho(flight: Path, meta: dict) -> list[Path]:
    area = meta.get("area_dir")
    candidates = [Path(area) / "ortho.tif", flight / Path(area) / "ortho.tif"] if area else []
    candidates.append(flight / "ortho.tif")
    for path in candidates:
        if path.is_file():
            return [path]
    raise FileNotFoundError(f"no tile index and no orthophoto for {flight}: pass --index DIR or --ortho AREA.tif")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from edge_geoloc.artifacts import ArtifactError
    from edge_geoloc.runtime.config import RuntimeConfig
    from edge_geoloc.runtime.pipeline import Pipeline
    from edge_geoloc.runtime.replay import (
        FlightError,
        format_error_table,
        read_flight,
        replay,
        with_flight_camera,
        write_outputs,
    )
    from edge_geoloc.runtime.tile_index import TileIndexError

    try:
        cfg = config_from_args(RuntimeConfig, args)
        flight = read_flight(args.flight)
        cfg = with_flight_camera(cfg, flight)  # the camera's field of view from flight.json, unless configured
        out = args.out or args.flight / "replay"
        retrieval, localizer = find_model(args.models, "retrieval"), find_model(args.models, "localizer")
        index_dir = resolve_index(args, flight.meta, retrieval, out, cfg)
    except (ConfigError, FlightError, FileNotFoundError) as err:
        print(f"edge-geoloc run: {err}")
        return 2
    save_config(cfg, out / "config.yaml")
    try:
        pipeline = Pipeline.from_config(retrieval, localizer, index_dir, cfg)
    except (ArtifactError, TileIndexError, ValueError) as err:
        print(f"edge-geoloc run: {err}")
        return 2
    speed = 1.0 if args.realtime else args.speed
    result = replay(pipeline, flight, speed=speed, max_frames=args.max_frames, max_sensor_gap_s=args.max_sensor_gap_s)
    errors = write_outputs(result, out, cfg.pipeline.min_confidence, flight.truth is not None)
    print(f"replayed {len(result.rows)} frames in {result.wall_s:.1f} s -> {out}")
    print("counters: " + json.dumps({k: v for k, v in result.counters.items() if v}, default=str))
    skipped = {k: v for k, v in result.counters["input"].items() if v}
    if skipped:
        print("bad input skipped: " + json.dumps(skipped))
    if errors is not None:
        print(format_error_table(errors))
    return 0
