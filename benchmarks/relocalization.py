"""Relocalization benchmark: EKF and particle fusion side by side, with the trained models, on unseen areas.

The localizer (xcorr_drone_micro) and the retrieval model are trained on a "source" area
(``relocalization_setup``); >= 20 seeded flights over two "target" areas that no model saw are flown through
the real on-board ``Pipeline`` (ONNX Runtime, CPU) once per scenario and fusion mode. Each scenario gets its
own simulated GNSS (the sim's receiver model, 1 Hz, with RMC speed/course and GST sigmas):

- ``denied_start``: no GNSS for the first ``denied_s`` (120 s), then normal GNSS;
- ``outage_after_jump``: a 25 m multipath jump at 20 s (8 s, reported sigma x1.6 only), then a 120 s outage;
- ``urban_multipath``: the sim's urban-canyon preset for the whole flight;
- ``normal``: open sky.

By default the matcher scores the 52 m disc each frame covers (``global_search.disc_m``) and the map grid's scores
weigh the particles (``grid_weighs_particles``): the settings chosen on the validation flights (``--validation``:
two other areas, flight seeds from 100); ``--global-search '{}' --particle '{}'`` gives the runtime's own.

Global search (``global_search.kind``, :mod:`edge_geoloc.runtime.global_search`): the learned retrieval
(``retrieval``, the CSP-HD descriptor) and the learned map matcher (``matcher``, trained for these 45 m frames by
``relocalization_setup.prepare_matcher``) in every scenario; for ``denied_start``, where everything hangs on it,
also the classical NCC search (``ncc``): the same pipeline, one config key apart.

Per scenario and mode: success rate (a published fix -- initialised, not ambiguous -- under 10 m within 10
frames of the event: the first frame, or the outage start), time to the first correct fix, mean/p95 error over
published frames (and their share), p95 of GNSS only (the latest fix, held through outages), the share of
frames where the fused error exceeds the GNSS-only error by more than 1 m, the p95 over every frame with an
estimate (ambiguous ones too), inside outages their mean/p95 and published share, CPU ms per frame (whole pipeline,
process time) and the fusion's own ms. Frames are rendered at 0.5 Hz and 128 px to fit the shared 2-core box.

    python benchmarks/relocalization.py --quick    # 4 flights of 80 s (outages shortened); smoke test
    python benchmarks/relocalization.py            # 20 flights of 150 s; JSON: benchmarks/results/relocalization.json
    python benchmarks/relocalization.py --scenarios denied_start,outage_after_jump --variants matcher/particle \
        --flights-per-area 5                       # a subset (the JSON records the selection)

The JSON is rewritten after every flight (``complete: false`` and ``flights_done`` until the run ends).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import pickle
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from relocalization_setup import (  # noqa: E402
    TEST_AREAS,
    VALIDATION_AREAS,
    prepare_flight,
    prepare_matcher,
    prepare_models,
    prepare_test_areas,
    runtime_config,
)

from edge_geoloc.artifacts import atomic_write_json  # noqa: E402
from edge_geoloc.config import from_dict  # noqa: E402
from edge_geoloc.geo import latlon_to_utm  # noqa: E402
from edge_geoloc.runtime.config import GlobalSearchConfig  # noqa: E402
from edge_geoloc.runtime.global_search import make_global_search  # noqa: E402
from edge_geoloc.runtime.pipeline import Pipeline  # noqa: E402
from edge_geoloc.runtime.replay import measured_attitude, read_flight, with_flight_camera  # noqa: E402
from edge_geoloc.sim import load_area  # noqa: E402
from edge_geoloc.sim.gnss import gnss_preset, simulate_gnss_errors  # noqa: E402
from edge_geoloc.types import CameraFrame, CovarianceType, GnssFix, diagonal_covariance  # noqa: E402

log = logging.getLogger("benchmarks.relocalization")

SCENARIOS = ("denied_start", "outage_after_jump", "urban_multipath", "normal")
MODES = ("ekf", "particle")
DEFAULT_SEARCHES = ("retrieval", "matcher")  # global search: the learned retrieval or the learned map matcher
SEARCHES = {"denied_start": ("retrieval", "ncc", "matcher")}  # ... and, where everything hangs on it, NCC too
CORRECT_M, SUCCESS_FRAMES, WORSE_MARGIN_M = 10.0, 10, 1.0
# The settings chosen on the validation flights (docs/runtime.md, "The final settings"); '{}' gives the runtime's own
DEFAULT_MATCHER_SEARCH = {"disc_m": 52.0}
DEFAULT_PARTICLE = {"grid_weighs_particles": True}
VALIDATION_FIRST_SEED = 100  # flight seeds of --validation (the test flights are 0..)
GNSS_RATE_HZ, JUMP_AT_S, JUMP_S, JUMP_M = 1.0, 10.0, 8.0, 25.0
SIZES = {"quick": dict(flights_per_area=2, duration_s=80.0, denied_s=40.0, outage_s=40.0),
         "full": dict(flights_per_area=10, duration_s=150.0, denied_s=120.0, outage_s=120.0)}


class Memo:
    """Wraps the pipeline's encoder or localizer: identical inputs (the same frame, the same tile patch) are
    computed once per flight and shared by all scenarios and modes. Exact (keyed by a hash of the input bytes;
    ONNX Runtime on the CPU is deterministic), and kept on disk per flight (:func:`flight_memo`), so a second run
    of the benchmark only re-runs the filters. The CPU time per frame is measured on each area's first flight,
    which runs without it."""

    def __init__(self, inner, cache: dict) -> None:
        self.inner, self.cache = inner, cache

    def locate(self, query_rgb: np.ndarray, aerial_rgb: np.ndarray) -> np.ndarray:
        key = ("l", _digest(query_rgb, aerial_rgb))
        if key not in self.cache:
            self.cache[key] = self.inner.locate(query_rgb, aerial_rgb)
        return self.cache[key]

    def embed(self, images) -> np.ndarray:
        key = ("e", _digest(*images))
        if key not in self.cache:
            self.cache[key] = self.inner.embed(images)
        return self.cache[key]

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _digest(*arrays: np.ndarray) -> bytes:
    return hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays), digest_size=16).digest()


def flight_memo(cache: Path, models, area_name: str, seed: int) -> tuple[dict, Path]:
    """The memo of one flight's model outputs (empty when none is stored), and where to store it."""
    path = cache / "memo" / f"{models.retrieval_onnx.parent.name}-{area_name}-{seed}.pkl"
    return (pickle.loads(path.read_bytes()) if path.exists() else {}), path


def store_memo(memo: dict, path: Path, known: int) -> None:
    if len(memo) > known:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(memo, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)


@dataclass(frozen=True)
class ScenarioGnss:
    fixes: list[GnssFix]
    event_s: float  # relative to the first frame: when success is judged from
    outage_s: tuple[float, float] | None  # relative


def _gnss_config(name: str, size: dict):
    if name == "urban_multipath":
        return gnss_preset("urban_multipath", rate_hz=GNSS_RATE_HZ)
    if name == "denied_start":
        return gnss_preset("normal", rate_hz=GNSS_RATE_HZ, outages=((0.0, size["denied_s"]),))
    if name == "outage_after_jump":
        start = JUMP_AT_S + JUMP_S
        return gnss_preset("normal", rate_hz=GNSS_RATE_HZ, outages=((start, start + size["outage_s"]),))
    return gnss_preset("normal", rate_hz=GNSS_RATE_HZ)


def scenario_gnss(name: str, flight, area, size: dict, seed: int) -> ScenarioGnss:
    """The scenario's GNSS fixes along the flight's truth (interpolated to the receiver's epochs)."""
    rng = np.random.default_rng([seed, SCENARIOS.index(name)])
    truth = flight.truth
    t0 = float(truth["stamp_s"][0])
    rel = np.arange(0.0, float(truth["stamp_s"][-1]) - t0 + 1e-9, 1.0 / GNSS_RATE_HZ)
    track = simulate_gnss_errors(t0 + rel, _gnss_config(name, size), rng)
    error, sigma = track.error_enu_m.copy(), track.sigma_enu_m.copy()
    if name == "outage_after_jump":
        inside = (rel >= JUMP_AT_S) & (rel < JUMP_AT_S + JUMP_S)
        angle = rng.uniform(0, 2 * math.pi)
        error[inside, :2] += JUMP_M * np.array([math.sin(angle), math.cos(angle)])
        sigma[inside] *= 1.6
    east = np.interp(t0 + rel, truth["stamp_s"], truth["east_m"]) + error[:, 0]
    north = np.interp(t0 + rel, truth["stamp_s"], truth["north_m"]) + error[:, 1]
    heading = np.interp(t0 + rel, truth["stamp_s"], np.unwrap(truth["heading_rad"]))
    alt = float(truth["alt_m"][0])
    fixes = []
    for k in np.flatnonzero(track.valid):
        lat, lon = area.local_to_latlon(east[k], north[k])
        fixes.append(GnssFix(float(t0 + rel[k]), float(lat), float(lon), alt + float(error[k, 2]),
                             diagonal_covariance(*sigma[k]), CovarianceType.DIAGONAL_KNOWN,
                             num_satellites=int(track.num_satellites[k]), hdop=float(track.hdop[k]),
                             speed_mps=8.0 + float(rng.normal(0, 0.1)),
                             course_rad=float(heading[k] + rng.normal(0, 0.01)) % (2 * math.pi)))
    event = {"denied_start": 0.0, "outage_after_jump": JUMP_AT_S + JUMP_S}.get(name, 0.0)
    outage = {"denied_start": (0.0, size["denied_s"]),
              "outage_after_jump": (event, event + size["outage_s"])}.get(name)
    return ScenarioGnss(fixes, event, outage)


def gnss_only_errors(fixes: list[GnssFix], flight, area) -> np.ndarray:
    """(F,) error of the latest GNSS fix at each frame (held through outages; NaN before the first)."""
    stamps = np.array([f.stamp_s for f in fixes])
    out = np.full(len(flight.frame_stamps_s), np.nan)
    for i, t in enumerate(flight.frame_stamps_s):
        k = np.searchsorted(stamps, t, side="right") - 1
        if k >= 0:
            e, n = area.latlon_to_local(fixes[k].lat_deg, fixes[k].lon_deg)
            out[i] = math.hypot(e - flight.truth["east_m"][i], n - flight.truth["north_m"][i])
    return out


def load_frames(flight) -> list[CameraFrame]:
    """Decoded frames with the on-board heading and height (``sensors.csv``), once per flight."""
    frames = []
    for i, (stamp, path) in enumerate(zip(flight.frame_stamps_s, flight.frame_paths, strict=True)):
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        heading, altitude = measured_attitude(flight, float(stamp))
        frames.append(CameraFrame(float(stamp), rgb, f"frame_{i:06d}", heading, altitude))
    return frames


def frames_with_gnss(frames: list[CameraFrame], fixes) -> Iterator[tuple[CameraFrame, list]]:
    """Each frame with the GNSS fixes stamped since the previous frame (up to and including its stamp)."""
    ordered, j = sorted(fixes, key=lambda f: f.stamp_s), 0
    for frame in frames:
        batch = []
        while j < len(ordered) and ordered[j].stamp_s <= frame.stamp_s:
            batch.append(ordered[j])
            j += 1
        yield frame, batch


def fly(models, test_area, flight, frames: list[CameraFrame], gnss: ScenarioGnss, mode: str,
        search: str, memo: dict | None, matcher: Path | None = None, fusion_seed: int = 0,
        particle: dict | None = None, global_search: dict | None = None) -> dict[str, np.ndarray]:
    """One flight through a fresh pipeline (GNSS between frames via ``add_gnss``, as the replay does);
    ``particle`` / ``global_search``: overrides of the ``fusion.particle`` / ``global_search`` sections."""
    overrides = {"fusion": {"mode": mode, "particle": {**(particle or {}), "seed": fusion_seed}},
                 "global_search": search_config(search, matcher, global_search)}
    cfg = with_flight_camera(runtime_config(overrides), flight)
    pipe = Pipeline.from_config(models.retrieval_onnx, models.localizer_onnx, test_area.index_dir, cfg)
    if memo is not None:
        pipe.localizer = Memo(pipe.localizer, memo)
        if search == "retrieval":
            pipe.encoder = pipe.global_search.encoder = Memo(pipe.encoder, memo)
    states = []
    cpu0 = time.process_time()
    for frame, batch in frames_with_gnss(frames, gnss.fixes):
        for fix in batch[:-1]:
            pipe.add_gnss(fix)
        states.append(pipe.process(frame, batch[-1] if batch else None))
    cpu_ms = (time.process_time() - cpu0) * 1e3 / max(len(states), 1)
    area = _area(test_area)
    err = np.full(len(states), np.nan)
    for i, s in enumerate(states):
        if s.initialized:
            e, n = area.latlon_to_local(s.lat_deg, s.lon_deg)
            err[i] = math.hypot(e - flight.truth["east_m"][i], n - flight.truth["north_m"][i])
    published = np.array([s.initialized and not s.ambiguous for s in states])
    fusion_ms = np.array([s.latency.fusion_ms for s in states])
    return {"error_m": err, "published": published, "cpu_ms": None if memo is not None else cpu_ms,
            "fusion_ms": float(fusion_ms.mean())}


_AREAS: dict[str, object] = {}


def search_config(search: str, matcher: Path | None, overrides: dict | None = None) -> dict:
    """The ``global_search`` section of a search kind (``matcher``: the exported map matcher at ``matcher``, with
    ``overrides`` of its settings, e.g. ``disc_m``)."""
    if search != "matcher":
        return {"kind": search}
    return {**(overrides or {}), "kind": search, "model": str(matcher)}


def global_search_recall(models, test_area, flight, frames: list[CameraFrame], memo: dict | None,
                         map_searches: set[str], matcher: Path | None = None, overrides: dict | None = None) -> dict:
    """Per frame, GNSS-free: is the truth inside one of the top-5 tiles of the learned retrieval / of each map
    search in ``map_searches`` (``ncc``, ``matcher``: the exported map matcher at ``matcher``), and is a map
    search's own best match within 10 m? (Chance: 5 x tiles covering a point / tiles.)"""
    cfg = with_flight_camera(runtime_config(), flight)
    pipe = Pipeline.from_config(models.retrieval_onnx, models.localizer_onnx, test_area.index_dir, cfg)
    encoder = Memo(pipe.encoder, memo) if memo is not None else pipe.encoder
    index, zone = pipe.index, pipe.index.zone
    searches = {kind: make_global_search(from_dict(GlobalSearchConfig, search_config(kind, matcher, overrides)), None,
                                         index,
                                         cfg.camera.hfov_deg, cfg.backend)
                for kind in ("ncc", "matcher") if kind in map_searches}
    half = index.tile_size_m / 2
    hits: dict[str, list[bool]] = {"learned_top5": []}
    for i, frame in enumerate(frames):
        x, y, _ = latlon_to_utm(flight.truth["lat_deg"][i], flight.truth["lon_deg"][i], zone)
        covered = (np.abs(index.tiles["utm_east_m"] - x) < half) & (np.abs(index.tiles["utm_north_m"] - y) < half)
        learned = index.search(encoder.embed([frame.image_rgb])[0], 5)
        hits["learned_top5"].append(bool(covered[learned.ids].any()))
        for kind, search in searches.items():
            top5 = search.search(frame, frame.image_rgb, 5).ids
            hits.setdefault(f"{kind}_top5", []).append(bool(covered[top5].any()))
            m = search.last_match
            hits.setdefault(f"{kind}_top1_within_10m", []).append(
                m is not None and math.hypot(m.east_m - x, m.north_m - y) < CORRECT_M)
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    covering = float(np.mean([np.sum((np.abs(index.tiles["utm_east_m"] - index.tiles["utm_east_m"][j]) < half)
                                     & (np.abs(index.tiles["utm_north_m"] - index.tiles["utm_north_m"][j]) < half))
                              for j in range(len(index))]))
    out["chance_top5"] = min(1.0, 5 * covering / len(index))
    return out


def _area(test_area):
    if test_area.name not in _AREAS:
        _AREAS[test_area.name] = load_area(test_area.area_dir)
    return _AREAS[test_area.name]


def flight_metrics(run: dict, gnss_err: np.ndarray, gnss: ScenarioGnss, stamps_rel: np.ndarray) -> dict:
    err, pub = run["error_m"], run["published"]
    event = int(np.searchsorted(stamps_rel, gnss.event_s))
    correct = pub & (err < CORRECT_M)
    after = np.flatnonzero(correct[event:])
    first = event + int(after[0]) if after.size else None
    both = pub & np.isfinite(gnss_err)
    out = {"success": first is not None and first < event + SUCCESS_FRAMES,
           "ttff_s": float(stamps_rel[first] - stamps_rel[event]) if first is not None else None,
           "errors": err[pub].tolist(), "published_share": float(pub.mean()),
           "all_errors": err[np.isfinite(err)].tolist(),
           "worse": int(np.sum(err[both] > gnss_err[both] + WORSE_MARGIN_M)), "compared": int(both.sum()),
           "cpu_ms": run["cpu_ms"], "fusion_ms": run["fusion_ms"]}
    if gnss.outage_s is not None:
        inside = (stamps_rel >= gnss.outage_s[0]) & (stamps_rel < gnss.outage_s[1]) & pub
        out["outage_errors"] = err[inside].tolist()
        out["outage_published"] = float(inside.sum() / max(1, np.sum((stamps_rel >= gnss.outage_s[0])
                                                                      & (stamps_rel < gnss.outage_s[1]))))
    return out


def _p95(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 95)), 2) if values else None


def aggregate(per_flight: list[dict], gnss_errors: list[float]) -> dict:
    errors = [e for f in per_flight for e in f["errors"]]
    ttff = [f["ttff_s"] for f in per_flight if f["ttff_s"] is not None]
    compared = sum(f["compared"] for f in per_flight)
    out = {"flights": len(per_flight), "success_rate": round(float(np.mean([f["success"] for f in per_flight])), 3),
           "ttff_s_median": round(float(np.median(ttff)), 1) if ttff else None,
           "never_correct": sum(f["ttff_s"] is None for f in per_flight),
           "mean_m": round(float(np.mean(errors)), 2) if errors else None, "p95_m": _p95(errors),
           "p95_all_estimates_m": _p95([e for f in per_flight for e in f["all_errors"]]),
           "published_share": round(float(np.mean([f["published_share"] for f in per_flight])), 3),
           "gnss_only_p95_m": _p95(gnss_errors),
           "worse_than_gnss_share": round(sum(f["worse"] for f in per_flight) / compared, 3) if compared else None,
           "cpu_ms_per_frame": round(float(np.mean([f["cpu_ms"] for f in per_flight if f["cpu_ms"] is not None])), 1),
           "fusion_ms_per_frame": round(float(np.mean([f["fusion_ms"] for f in per_flight])), 2)}
    outage = [e for f in per_flight for e in f.get("outage_errors", [])]
    if outage:
        out["outage_mean_m"], out["outage_p95_m"] = round(float(np.mean(outage)), 2), _p95(outage)
        out["outage_published_share"] = round(float(np.mean([f["outage_published"] for f in per_flight])), 3)
    return out


def variants(scenario: str) -> list[str]:
    """``search/mode`` rows of a scenario."""
    return [f"{search}/{mode}" for search in SEARCHES.get(scenario, DEFAULT_SEARCHES) for mode in MODES]


@dataclass(frozen=True)
class Selection:
    """What one run flies: scenarios, ``search/mode`` variants (None: all of each scenario), flights per area."""

    scenarios: tuple[str, ...] = SCENARIOS
    variants: tuple[str, ...] | None = None
    flights_per_area: int | None = None  # None: the size's
    fusion_seed: int = 0  # the particle filter's seed (another draw of the filter on the same flights)
    particle: tuple[tuple[str, object], ...] = ()  # fusion.particle overrides (key, value)
    global_search: tuple[tuple[str, object], ...] = ()  # the matcher's global_search overrides (key, value)
    areas: tuple[tuple[str, int], ...] = TEST_AREAS  # or VALIDATION_AREAS (--validation)
    first_seed: int = 0  # flight seeds first_seed .. first_seed + flights_per_area - 1

    def rows(self, scenario: str) -> list[str]:
        return [v for v in variants(scenario) if self.variants is None or v in self.variants]

    def searches(self) -> set[str]:
        return {v.split("/")[0] for s in self.scenarios for v in self.rows(s)}


def fly_flight(size: dict, cache: Path, area_index: int, seed: int, selection: Selection) -> dict:
    """One flight over one test area, every selected scenario and variant: per-flight results (JSON-ready)."""
    models = prepare_models(cache)
    matcher = prepare_matcher(cache) if "matcher" in selection.searches() else None
    area = prepare_test_areas(cache, models, selection.areas)[area_index]
    flight = read_flight(prepare_flight(cache, area, seed, size["duration_s"]))
    frames = load_frames(flight)
    memo, memo_path = flight_memo(cache, models, area.name, seed)
    known = len(memo)
    memo = None if seed == 0 else memo  # the first flight of each area is timed without the memo
    stamps_rel = flight.frame_stamps_s - flight.frame_stamps_s[0]
    recall = global_search_recall(models, area, flight, frames, memo, selection.searches() - {"retrieval"},
                                  matcher.onnx if matcher else None, dict(selection.global_search))
    log.info("%s seed %d global search recall: %s", area.name, seed, recall)
    train = {**models.train_metrics, **({"matcher": matcher.metrics} if matcher else {})}
    out = {"area": area.name, "seed": seed, "per_flight": {}, "gnss_err": {}, "recall": recall, "train": train}
    for scenario in selection.scenarios:
        gnss = scenario_gnss(scenario, flight, _area(area), size, seed)
        g_err = gnss_only_errors(gnss.fixes, flight, _area(area))
        out["gnss_err"][scenario] = g_err[np.isfinite(g_err)].tolist()
        for variant in selection.rows(scenario):
            search, mode = variant.split("/")
            result = flight_metrics(fly(models, area, flight, frames, gnss, mode, search, memo,
                                        matcher.onnx if matcher else None, selection.fusion_seed,
                                        dict(selection.particle), dict(selection.global_search)), g_err,
                                    gnss, stamps_rel)
            out["per_flight"][f"{scenario}|{variant}"] = result
            log.info("%s seed %d %-18s %-16s success %s ttff %s p95 %s", area.name, seed, scenario, variant,
                     result["success"], result["ttff_s"], _p95(result["errors"]))
    if memo is not None:
        store_memo(memo, memo_path, known)
    return out


def table_of(flights: list[dict], selection: Selection) -> tuple[dict, dict]:
    """One table over the flights flown so far, and the mean global-search recall per frame."""
    table = {}
    for s in selection.scenarios:
        rows = {v: aggregate([f["per_flight"][f"{s}|{v}"] for f in flights],
                             [e for f in flights for e in f["gnss_err"][s]]) for v in selection.rows(s)}
        table[s] = rows
    keys = sorted({k for f in flights for k in f["recall"]})
    search = {k: round(float(np.mean([f["recall"][k] for f in flights if k in f["recall"]])), 3) for k in keys}
    return table, search


def run(size: dict, cache: Path, jobs: int, selection: Selection, report) -> list[dict]:
    """Every selected flight of every test area (``jobs`` flights in parallel, one process each); ``report`` gets
    the flights done so far after each one (the incremental JSON)."""
    models = prepare_models(cache)  # build the shared cache once, before any worker
    prepare_test_areas(cache, models, selection.areas)
    if "matcher" in selection.searches():
        prepare_matcher(cache)
    count = selection.flights_per_area or size["flights_per_area"]
    seeds = range(selection.first_seed, selection.first_seed + count)
    work = [(a, seed) for seed in seeds for a in range(len(selection.areas))]
    done: list[dict] = []
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(fly_flight, size, cache, a, seed, selection) for a, seed in work]
            for future in as_completed(futures):
                done.append(future.result())
                report(done)
    else:
        for a, seed in work:
            done.append(fly_flight(size, cache, a, seed, selection))
            report(done)
    return done


def markdown(table: dict) -> str:
    lines = ["| scenario | search/fusion | success | TTFF median (s) | mean (m) | p95 (m) | GNSS-only p95 (m) | "
             "worse than GNSS | published | CPU ms/frame | fusion ms |", "|---" * 11 + "|"]
    for s, modes in table.items():
        for m, r in modes.items():
            lines.append(f"| {s} | {m} | {r['success_rate']:.2f} | {r['ttff_s_median']} | {r['mean_m']} | "
                         f"{r['p95_m']} | {r['gnss_only_p95_m']} | {r['worse_than_gnss_share']} | "
                         f"{r['published_share']:.2f} | {r['cpu_ms_per_frame']} | {r['fusion_ms_per_frame']} |")
    return "\n".join(lines)


def _selection(args, parser) -> Selection:
    scenarios = tuple(args.scenarios.split(",")) if args.scenarios else SCENARIOS
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"--scenarios: unknown {unknown}; choose from {SCENARIOS}")
    chosen = tuple(args.variants.split(",")) if args.variants else None
    known = {v for s in scenarios for v in variants(s)}
    if chosen is not None and not set(chosen) <= known:
        parser.error(f"--variants: unknown {sorted(set(chosen) - known)}; choose from {sorted(known)}")
    if args.flights_per_area is not None and args.flights_per_area < 1:
        parser.error("--flights-per-area must be >= 1")
    overrides = {}
    for flag, section in (("particle", "fusion.particle"), ("global_search", "global_search")):
        try:
            overrides[flag] = tuple(sorted(json.loads(getattr(args, flag)).items()))
        except (json.JSONDecodeError, AttributeError):
            parser.error(f"--{flag.replace('_', '-')} must be a JSON object of {section} settings, got "
                         f"{getattr(args, flag)!r}")
    areas = VALIDATION_AREAS if args.validation else TEST_AREAS
    first_seed = VALIDATION_FIRST_SEED if args.validation else 0
    return Selection(scenarios, chosen, args.flights_per_area, args.fusion_seed, overrides["particle"],
                     overrides["global_search"], areas, first_seed)


def train_metrics_of(flights: list[dict]) -> dict:
    return flights[0]["train"] if flights else {}


def result_json(mode: str, size: dict, selection: Selection, flights: list[dict], wall_s: float,
                complete: bool) -> dict:
    table, search = table_of(flights, selection)
    return {"benchmark": "relocalization", "mode": mode, "sizes": size, "complete": complete,
            "selection": {"scenarios": list(selection.scenarios),
                          "variants": list(selection.variants) if selection.variants else "all",
                          "flights_per_area": selection.flights_per_area or size["flights_per_area"],
                          "fusion_seed": selection.fusion_seed, "particle": dict(selection.particle),
                          "global_search": dict(selection.global_search), "first_seed": selection.first_seed},
            "flights_done": sorted([f["area"], f["seed"]] for f in flights),
            "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} CPU threads (shared)", "test_areas": [f"{s}{k}" for s, k in selection.areas],
            "definitions": {"correct_m": CORRECT_M, "success_frames": SUCCESS_FRAMES,
                            "worse_margin_m": WORSE_MARGIN_M, "frame_rate_hz": 0.5, "gnss_rate_hz": GNSS_RATE_HZ},
            "train_metrics": train_metrics_of(flights), "global_search_per_frame": search,
            "results": table, "table_markdown": markdown(table), "wall_s": round(wall_s, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenarios", default=None, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--variants", default=None, help="comma-separated search/mode rows, e.g. matcher/particle")
    parser.add_argument("--flights-per-area", type=int, default=None, help="default: 10 (full), 2 (--quick)")
    parser.add_argument("--fusion-seed", type=int, default=0, help="the particle filter's seed")
    parser.add_argument("--particle", default=json.dumps(DEFAULT_PARTICLE),
                        help='fusion.particle overrides as JSON, e.g. \'{"map_grid": false}\' (default: '
                             f'{json.dumps(DEFAULT_PARTICLE)}, chosen on the validation flights)')
    parser.add_argument("--global-search", default=json.dumps(DEFAULT_MATCHER_SEARCH),
                        help='the map matcher\'s global_search overrides as JSON, e.g. \'{"disc_m": 44}\' (default: '
                             f'{json.dumps(DEFAULT_MATCHER_SEARCH)}: the disc a 60 deg camera covers at 45 m)')
    parser.add_argument("--validation", action="store_true",
                        help="fly the validation areas (flight seeds from 100) instead of the test areas: where "
                             "settings are chosen")
    parser.add_argument("--cache", default=".cache/relocalization", help="models, areas and flights (reused)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/relocalization[_quick].json")
    parser.add_argument("--jobs", type=int, default=1, help="flights flown in parallel (one process each)")
    args = parser.parse_args(argv)
    selection = _selection(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    mode = "quick" if args.quick else "full"
    out = Path(args.out or f"benchmarks/results/relocalization{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def report(flights: list[dict], complete: bool = False) -> dict:
        result = result_json(mode, SIZES[mode], selection, flights, time.monotonic() - t0, complete)
        atomic_write_json(out, json.loads(json.dumps(result, default=str)))
        return result

    result = report(run(SIZES[mode], Path(args.cache), args.jobs, selection, report), complete=True)
    print(result["table_markdown"])
    print("global search per frame (truth in top-5 tiles; map searches' top-1 within 10 m):",
          result["global_search_per_frame"])
    print(f"wall {result['wall_s']:.0f} s; JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
