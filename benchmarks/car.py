"""Cars through the on-board pipeline: seeded urban drives, GNSS with multipath, map-vs-drive gap.

Two areas (one per built-in style) that no localizer was trained on are mapped under ``summer_map``; each
holds ``DRIVES_PER_AREA`` seeded drives along its roads (``sim.flight.car_path``, 8 m/s), a 360 deg panorama
at ``FRAME_HZ`` rendered under ``autumn_flight`` (the gap: other season, sun, sensor, changed buildings; the
same drives under ``summer_map`` are the easy row) and a GNSS receiver at 5 Hz with the ``urban_multipath``
preset (bias, 20 m multipath jumps it under-reports) that also reports its Doppler speed and course, as
``sim.flight``'s RMC does (``--no-gnss-velocity``: position only, as the JSONs before 2026-12-02 10:00).
Every drive goes through ``runtime.pipeline.Pipeline`` without retrieval: the aerial patch is cut around the
fused estimate (else the raw GNSS fix), the ground localizer's heat map gives a visual fix, and the runtime's
fusion (the EKF by default, ``--set fusion.mode=particle``) fuses it with GNSS, as for drones.

Rows: GNSS only (the latest fix held), fused with the classical BEV + NCC matcher
(``runtime.classical_ground``), fused with the learned BEV matcher when its checkpoints are given
(``--bev-matcher``, one row per seed, trained on other areas of the source style only by
``benchmarks/ground_localizer.py --parts bev_matcher``; ``runtime.learned_ground``, the PyTorch network as its
features callable), and fused with the learned panorama localizer when a checkpoint is given
(``--learned``, e.g. from ``benchmarks/ground_localizer.py``). Per row: mean / p95 / max, lateral /
longitudinal (along the true heading), share of frames where fused is worse than GNSS only, per-drive p95
against GNSS only, CPU ms per frame (pipeline wall time, 1 thread). Goal: fused p95 at most half of GNSS
only's, and no drive worse.

    python benchmarks/car.py --quick [--learned runs/bench_ground/quick/pano_known_s0/last.safetensors]
    python benchmarks/car.py --bev-matcher runs/bench_ground/full/bev_matcher_s{1,2,3}/final.safetensors
    python benchmarks/car.py --quick --set fusion.mode=particle --out benchmarks/results/car_particle_doppler.json
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.config import load_config
from edge_geoloc.evaluate.car_metrics import drive_comparison, drive_error_stats
from edge_geoloc.geo import EnuFrame
from edge_geoloc.runtime.classical_ground import BevNccConfig, BevNccLocalizer
from edge_geoloc.runtime.config import RuntimeConfig, TileIndexConfig
from edge_geoloc.runtime.learned_ground import LearnedBevConfig, LearnedBevLocalizer
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.tile_build import MapPatchesOnly, build_tile_index
from edge_geoloc.sim.area import Area, capture_area, generate_area
from edge_geoloc.sim.flight import car_path, sample_path
from edge_geoloc.sim.gnss import RMC_COURSE_SIGMA_RAD, RMC_SPEED_SIGMA_MPS, gnss_preset, simulate_gnss_errors
from edge_geoloc.sim.ground import render_ground_panorama
from edge_geoloc.types import CameraFrame, CovarianceType, GnssFix, diagonal_covariance

MAP_CONDITION, GAP_CONDITION = "summer_map", "autumn_flight"
STYLES = ("source", "target")
AREA_M, GSD_M, SPEED_MPS, FRAME_HZ, PANO_PX = 400.0, 0.5, 8.0, 1.0, (256, 128)
HEADING_SIGMA_DEG = 2.0
TEST_SEEDS, VALIDATION_SEEDS = (2000, 0), (2100, 1000)  # (first area seed, first drive seed)
LEARNED_AERIAL_M = 64.0  # the ground localizer benchmark's patch size (its sidecar declares no ground size)


@dataclass
class Drive:
    area_key: str
    seed: int
    stamps_s: np.ndarray  # frame times
    truth_en: np.ndarray  # (N, 2) local east/north of each frame
    heading_rad: np.ndarray  # true heading per frame
    heading_meas_rad: np.ndarray
    gnss: list[tuple[float, GnssFix, np.ndarray]]  # (stamp, fix, fix error east/north)


def make_drive(area: Area, key: str, seed: int, duration_s: float, gnss_velocity: bool = True) -> Drive:
    """A seeded drive; with ``gnss_velocity`` each fix carries the receiver's Doppler speed and course (RMC, the
    noise of ``sim.flight``; drawn from their own stream, so the positions do not change with it)."""
    rng = np.random.default_rng([seed, 77])
    path = car_path(area, SPEED_MPS * duration_s + 20.0, rng)
    t0 = 1.7e9 + 1000.0 * seed
    frame_t = np.arange(0.0, duration_s + 1e-9, 1.0 / FRAME_HZ)
    points, heading = sample_path(path, frame_t * SPEED_MPS)
    cfg = gnss_preset("urban_multipath")
    gnss_t = np.arange(0.0, duration_s + 1e-9, 1.0 / cfg.rate_hz)
    gnss_pts, gnss_heading = sample_path(path, gnss_t * SPEED_MPS)
    track = simulate_gnss_errors(t0 + gnss_t, cfg, rng)
    doppler = np.random.default_rng([seed, 78])
    speed = SPEED_MPS + doppler.normal(0.0, RMC_SPEED_SIGMA_MPS, len(gnss_t))
    course = (gnss_heading + doppler.normal(0.0, RMC_COURSE_SIGMA_RAD, len(gnss_t))) % (2 * math.pi)
    fixes = []
    for k, stamp in enumerate(t0 + gnss_t):
        if track.valid[k]:
            east, north = gnss_pts[k] + track.error_enu_m[k, :2]
            lat, lon = area.local_to_latlon(float(east), float(north))
            velocity = {"speed_mps": float(speed[k]), "course_rad": float(course[k])} if gnss_velocity else {}
            fix = GnssFix(float(stamp), float(lat), float(lon), area.ground_alt_m + 1.7 + track.error_enu_m[k, 2],
                          diagonal_covariance(*track.sigma_enu_m[k]), CovarianceType.DIAGONAL_KNOWN,
                          hdop=float(track.hdop[k]), num_satellites=int(track.num_satellites[k]), **velocity)
            fixes.append((float(stamp), fix, track.error_enu_m[k, :2].copy()))
    noise = np.radians(rng.normal(0.0, HEADING_SIGMA_DEG, len(frame_t)))
    return Drive(key, seed, t0 + frame_t, points, heading, (heading + noise) % (2 * math.pi), fixes)


def render_frames(scene: Area, drive: Drive, cache_dir: Path) -> np.ndarray:
    """(N, H, W, 3) panoramas along the drive, cached per area, drive, condition and length."""
    path = cache_dir / f"frames_{drive.area_key}_{drive.seed}_{scene.condition.name}_{len(drive.stamps_s)}.npy"
    if path.is_file():
        return np.load(path)
    frames = np.stack([render_ground_panorama(scene, float(e), float(n), float(h), 1.7, *PANO_PX)
                       for (e, n), h in zip(drive.truth_en, drive.heading_rad, strict=True)])
    np.save(path, frames)
    return frames


def run_drive(pipe: Pipeline, area: Area, drive: Drive, frames: np.ndarray) -> dict:
    """Feed the drive's GNSS and frames in time order; per frame the fused and the GNSS-only error vectors."""
    fused, gnss_only, ms, k = [], [], [], 0
    last_gnss_err = np.full(2, np.nan)
    for i, stamp in enumerate(drive.stamps_s):
        while k < len(drive.gnss) and drive.gnss[k][0] < stamp - 1e-6:
            pipe.add_gnss(drive.gnss[k][1])
            last_gnss_err, k = drive.gnss[k][2], k + 1
        fix = drive.gnss[k][1] if k < len(drive.gnss) and abs(drive.gnss[k][0] - stamp) < 1e-6 else None
        if fix is not None:
            last_gnss_err, k = drive.gnss[k][2], k + 1
        started = time.perf_counter()
        state = pipe.process(CameraFrame(float(stamp), frames[i], heading_rad=float(drive.heading_meas_rad[i])), fix)
        ms.append((time.perf_counter() - started) * 1e3)
        gnss_only.append(last_gnss_err)
        if state.initialized:
            east, north = area.latlon_to_local(state.lat_deg, state.lon_deg)
            fused.append((float(east) - drive.truth_en[i, 0], float(north) - drive.truth_en[i, 1]))
        else:
            fused.append(last_gnss_err)  # before the filter starts, the runtime has only the raw fix
    return {"fused": np.asarray(fused), "gnss": np.asarray(gnss_only), "ms": ms,
            "counters": {k: v for k, v in vars(pipe.counters).items() if k != "extra"} | pipe.counters.extra}


def summarise(runs: list[dict], drives: list[Drive]) -> dict:
    heading = np.concatenate([d.heading_rad for d in drives])
    fused, gnss = np.concatenate([r["fused"] for r in runs]), np.concatenate([r["gnss"] for r in runs])
    per_drive = [{"drive": f"{d.area_key}/{d.seed}",
                  "gnss_p95_m": drive_error_stats(r["gnss"], d.heading_rad)["p95_m"],
                  "fused_p95_m": drive_error_stats(r["fused"], d.heading_rad)["p95_m"]}
                 for r, d in zip(runs, drives, strict=True)]
    counters: dict = {}
    for r in runs:
        for key, value in r["counters"].items():
            counters[key] = counters.get(key, 0) + value
    comparison = drive_comparison(fused, gnss, heading)
    return {"gnss_only": comparison["gnss_only"], "fused": comparison["fused"],
            "share_fused_worse": comparison["share_fused_worse"],
            "drives_fused_p95_worse": int(sum(p["fused_p95_m"] > p["gnss_p95_m"] for p in per_drive)),
            "per_drive": per_drive, "cpu_ms_per_frame": float(np.mean(np.concatenate([r["ms"] for r in runs]))),
            "goal_p95_half": comparison["goal_p95_half"], "counters": counters}


def bev_matcher_localizer(checkpoint: str, aerial_size_m: float, temperature: float):
    """The learned BEV matcher of a checkpoint, its PyTorch network as the runtime's features callable."""
    from edge_geoloc.models.checkpoint import load_model
    from edge_geoloc.train.map_matcher import feature_fn

    model, meta = load_model(checkpoint, expected_kind="matcher")
    cfg = LearnedBevConfig.from_preprocessing(meta.preprocessing["image"], aerial_size_m=aerial_size_m,
                                              temperature=temperature)
    return LearnedBevLocalizer(feature_fn(model), cfg)


def localizers(learned: str | None, bev_matchers: tuple[str, ...] = (), temperature: float = 0.03,
               classical: bool = True) -> dict:
    out = {"classical_bev_ncc": (lambda: BevNccLocalizer(), 0.0)} if classical else {}
    for k, checkpoint in enumerate(bev_matchers):
        out[f"learned_bev_{k + 1}"] = (lambda c=checkpoint: bev_matcher_localizer(c, BevNccConfig().aerial_size_m,
                                                                                   temperature), 0.0)
    if learned:
        from edge_geoloc.runtime.backends import load_backend
        from edge_geoloc.runtime.pipeline import BackendLocalizer

        out["learned"] = (lambda: BackendLocalizer(load_backend(learned, kind="torch")), LEARNED_AERIAL_M)
    return out


def run(drives_per_area: int, duration_s: float, learned: str | None, work: Path, captures: tuple[str, ...],
        overrides: tuple[str, ...] = (), bev_matchers: tuple[str, ...] = (), temperature: float = 0.03,
        classical: bool = True, gnss_velocity: bool = True, validation: bool = False) -> dict:
    """``validation``: other areas and drive seeds (``VALIDATION_SEEDS``), to choose settings without the test
    drives."""
    report: dict = {}
    prepared = []
    area_seed, drive_seed = VALIDATION_SEEDS if validation else TEST_SEEDS
    for k, style in enumerate(STYLES):
        area = generate_area(style, area_seed + k, AREA_M, GSD_M, condition=MAP_CONDITION)
        area_dir = work / f"area_{style}"
        if not (area_dir / "ortho.tif").is_file():
            area.save(area_dir)
        index = build_tile_index([area_dir / "ortho.tif"], MapPatchesOnly(), TileIndexConfig(tile_size_m=120.0,
                                                                                           stride_m=60.0))
        drives = [make_drive(area, style, drive_seed + 100 * k + j, duration_s, gnss_velocity)
                  for j in range(drives_per_area)]
        prepared.append((area, index, drives))
    for capture in captures:
        made = localizers(learned, bev_matchers, temperature, classical)
        rows: dict = {name: ([], []) for name in made}
        for area, index, drives in prepared:
            scene = capture_area(area, capture)
            for drive in drives:
                frames = render_frames(scene, drive, work)
                for name, (make, aerial_m) in made.items():
                    cfg = load_config(RuntimeConfig, None, [f"pipeline.aerial_size_m={aerial_m}", *overrides])
                    origin = EnuFrame(area.center_lat_deg, area.center_lon_deg, area.ground_alt_m)
                    rows[name][0].append(run_drive(Pipeline(None, make(), index, cfg, origin), area, drive, frames))
                    rows[name][1].append(drive)
        report[capture] = {name: summarise(runs, drives) for name, (runs, drives) in rows.items()}
    return report


def print_report(report: dict) -> None:
    print("\nmean / p95 / max (m); lateral / longitudinal mean (m); share of frames fused worse; drives worse")
    for capture, rows in report.items():
        for name, row in rows.items():
            g, f = row["gnss_only"], row["fused"]
            print(f"{capture:<14} {name:<18} GNSS {g['mean_m']:5.2f} / {g['p95_m']:5.2f} / {g['max_m']:5.2f}   "
                  f"fused {f['mean_m']:5.2f} / {f['p95_m']:5.2f} / {f['max_m']:5.2f}   lat/lon "
                  f"{f['lateral_mean_m']:.2f}/{f['longitudinal_mean_m']:.2f} (GNSS {g['lateral_mean_m']:.2f}/"
                  f"{g['longitudinal_mean_m']:.2f})   worse {100 * row['share_fused_worse']:.0f}%   drives worse "
                  f"{row['drives_fused_p95_worse']}/{len(row['per_drive'])}   {row['cpu_ms_per_frame']:.1f} ms/frame"
                  f"   p95 goal {'PASS' if row['goal_p95_half'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 drives per area of 40 s (else 5 of 90 s)")
    parser.add_argument("--learned", default=None, help="ground localizer checkpoint (panorama, north-up)")
    parser.add_argument("--bev-matcher", nargs="+", default=[], help="learned BEV matcher checkpoints (one row each)")
    parser.add_argument("--bev-temperature", type=float, default=0.03, help="softmax temperature of its heat map")
    parser.add_argument("--no-classical", action="store_true", help="skip the classical BEV + NCC row")
    parser.add_argument("--no-easy-row", action="store_true", help=f"skip the {MAP_CONDITION} drives")
    parser.add_argument("--no-gnss-velocity", action="store_true",
                        help="fixes without the receiver's Doppler speed / course (the JSONs before 2026-12-02 10:00)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="runtime config override key=value (repeatable), e.g. fusion.min_gnss_sigma_m=5")
    parser.add_argument("--validation", action="store_true",
                        help="drive other areas and seeds (choose settings here, never on the test drives)")
    parser.add_argument("--out", default=None, help="default benchmarks/results/car[_validation].json")
    parser.add_argument("--work", default=None, help="default runs/bench_car[_validation]")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    duration = 40.0 if args.quick else 90.0
    captures = (GAP_CONDITION,) if args.no_easy_row else (GAP_CONDITION, MAP_CONDITION)
    started = time.perf_counter()
    suffix = "_validation" if args.validation else ""
    work = Path(args.work or f"runs/bench_car{suffix}")
    args.out = args.out or f"benchmarks/results/car{suffix}.json"
    work.mkdir(parents=True, exist_ok=True)
    report = run(5, duration, args.learned, work, captures, tuple(args.overrides), tuple(args.bev_matcher),
                 args.bev_temperature, not args.no_classical, not args.no_gnss_velocity, args.validation)
    print_report(report)
    out = {"benchmark": "car", "validation": args.validation, "quick": args.quick,
           "drives": 2 * 5, "drive_s": duration, "speed_mps": SPEED_MPS,
           "frame_hz": FRAME_HZ, "panorama_px": list(PANO_PX), "gnss": "urban_multipath",
           "gnss_velocity": not args.no_gnss_velocity,
           "conditions": {"map": MAP_CONDITION, "drive": list(captures)}, "learned": args.learned,
           "bev_matchers": args.bev_matcher, "bev_temperature": args.bev_temperature,
           "runtime_overrides": args.overrides, "results": report, "wall_s": time.perf_counter() - started,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version()}
    atomic_write_json(args.out, out)
    print(f"\nwrote {args.out} ({out['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
