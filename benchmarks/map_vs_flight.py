"""How much the map-vs-flight gap matters: the classical NCC baseline and the learned localizer per condition.

Part 1, global relocalization (no prior), classical only.

For each seed, two new areas (one per built-in style) are generated as maps under ``summer_map``; nadir drone
frames at random poses (80-120 m above ground, random heading) are rendered from the same layout under each
capture condition: the map's own (the easy row: map and flight are the same picture), ``overcast_flight``,
``autumn_flight`` (the realistic default gap: another season, sun, sensor and some changed buildings) and
``winter_flight`` (the hard case). The same poses are used under every condition (paired). Each frame is
aligned as the runtime aligns it (measured heading with 2 deg noise, height with 1 m noise) and matched by
normalised cross-correlation (a) over the whole map (GNSS-denied relocalization) and (b) within 50 m of a
prior that is 30 m off. Success: within 10 m of the truth. Chance of a random guess within 10 m over the whole
map is printed beside it.

Part 2, fine localization inside a prior patch, NCC against the learned ``xcorr_drone_micro`` on the same
inputs: a 64 m north-up map patch at 1 m/px around a coarse fix up to 16 m off, and the frame aligned as the
runtime aligns it (north-up, 32 m of ground). The model is trained per seed on two other areas (one per style)
whose views are rendered under random conditions (``sample_condition``): the test conditions are never seen
in training. Test pairs use the same poses under every condition (paired). Answering the patch centre (the
coarse fix) is the no-model bar.

    python benchmarks/map_vs_flight.py --quick     # 1 seed (~6 min on a shared 2-core CPU)
    python benchmarks/map_vs_flight.py             # 3 seeds (~25 min)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.data.pairs import DronePairConfig, read_pairs, write_synthetic_drone_pairs
from edge_geoloc.runtime.classical import NccConfig, NccMatcher
from edge_geoloc.sim import DronePose, PinholeCamera, render_drone_view
from edge_geoloc.sim.area import Area, capture_area, generate_area

MAP_CONDITION = "summer_map"
CAPTURES = ("summer_map", "overcast_flight", "autumn_flight", "winter_flight")
STYLES = ("source", "target")
AREA_M, GSD_M, MARGIN_M = 600.0, 0.5, 80.0
HFOV_DEG, FRAME_PX = 60.0, 256
SUCCESS_M, PRIOR_OFFSET_M, PRIOR_RADIUS_M = 10.0, 30.0, 50.0
TEMPLATES_M = (32.0, 64.0)


def random_poses(rng: np.random.Generator, count: int) -> list[dict]:
    half = AREA_M / 2 - MARGIN_M
    poses = []
    for _ in range(count):
        east, north = rng.uniform(-half, half, 2)
        alt, heading = rng.uniform(80.0, 120.0), rng.uniform(0, 2 * math.pi)
        angle = rng.uniform(0, 2 * math.pi)
        poses.append({"east": east, "north": north, "alt": alt, "heading": heading,
                      "heading_meas": heading + math.radians(rng.normal(0, 2.0)), "alt_meas": alt + rng.normal(0, 1),
                      "prior": (east + PRIOR_OFFSET_M * math.sin(angle), north + PRIOR_OFFSET_M * math.cos(angle))})
    return poses


def matchers(area: Area) -> dict[float, NccMatcher]:
    half = area.size_m / 2
    return {size: NccMatcher(area.ortho, -half, half, area.gsd_m, NccConfig(ground_size_m=size))
            for size in TEMPLATES_M}


def evaluate(area: Area, seen: Area, poses: list[dict], by_size: dict[float, NccMatcher]) -> dict:
    camera = PinholeCamera(FRAME_PX, FRAME_PX, HFOV_DEG)
    errors = {f"{mode}_{int(size)}m": [] for size in TEMPLATES_M for mode in ("global", "prior")}
    ms = []
    for p in poses:
        frame = render_drone_view(seen, DronePose(p["east"], p["north"], p["alt"], p["heading"]), camera)
        for size, matcher in by_size.items():
            started = time.perf_counter()
            template = matcher.prepare(frame, p["heading_meas"], p["alt_meas"], HFOV_DEG)
            best = matcher.locate(template)
            ms.append((time.perf_counter() - started) * 1e3)
            near = matcher.locate(template, p["prior"], PRIOR_RADIUS_M)
            errors[f"global_{int(size)}m"].append(math.hypot(best.east_m - p["east"], best.north_m - p["north"]))
            errors[f"prior_{int(size)}m"].append(math.hypot(near.east_m - p["east"], near.north_m - p["north"]))
    return {"errors": errors, "global_ms": ms}


def summarise(per_seed: list[dict]) -> dict:
    """Success rate and median error per condition and method: mean and std over seeds, plus pooled values."""
    out: dict = {}
    for capture in CAPTURES:
        out[capture] = {}
        for method in per_seed[0][capture]["errors"]:
            rates = [float(np.mean(np.asarray(s[capture]["errors"][method]) < SUCCESS_M)) for s in per_seed]
            pooled = np.concatenate([s[capture]["errors"][method] for s in per_seed])
            out[capture][method] = {"success_mean": float(np.mean(rates)), "success_std": float(np.std(rates)),
                                    "success_per_seed": rates, "median_m": float(np.median(pooled)),
                                    "n": int(len(pooled))}
    return out


def chance_global() -> float:
    """Probability that a uniformly random position over the searchable map is within SUCCESS_M."""
    side = AREA_M - min(TEMPLATES_M)
    return math.pi * SUCCESS_M**2 / side**2


def run(seeds: list[int], frames: int) -> dict:
    per_seed = []
    ms = []
    for seed in seeds:
        result = {c: {"errors": {}} for c in CAPTURES}
        for k, style in enumerate(STYLES):
            area = generate_area(style, 1000 + 10 * seed + k, AREA_M, GSD_M, condition=MAP_CONDITION)
            poses = random_poses(np.random.default_rng([seed, k]), frames)
            by_size = matchers(area)
            for capture in CAPTURES:
                res = evaluate(area, capture_area(area, capture), poses, by_size)
                ms += res["global_ms"]
                for method, errs in res["errors"].items():
                    result[capture]["errors"].setdefault(method, []).extend(errs)
        per_seed.append(result)
    return {"summary": summarise(per_seed), "global_ms_per_frame": float(np.mean(ms)) * 1.0,
            "chance_global_success": chance_global()}


def print_table(report: dict) -> None:
    print(f"\nNCC baseline, success = within {SUCCESS_M:.0f} m (mean +- std over seeds), map condition {MAP_CONDITION}")
    print(f"chance (random guess over the whole map): {100 * report['chance_global_success']:.2f} %; "
          f"prior window: +-{PRIOR_RADIUS_M:.0f} m around a prior {PRIOR_OFFSET_M:.0f} m off")
    methods = list(next(iter(report["summary"].values())))
    print(f"{'capture condition':<18}" + "".join(f"{m:>18}" for m in methods))
    for capture, rows in report["summary"].items():
        cells = "".join(f"{100 * r['success_mean']:>9.1f}+-{100 * r['success_std']:<4.1f}%  " for r in rows.values())
        print(f"{capture:<18}{cells}")
    print(f"{'median error (m)':<18}")
    for capture, rows in report["summary"].items():
        print(f"{capture:<18}" + "".join(f"{r['median_m']:>18.1f}" for r in rows.values()))
    print(f"NCC global search: {report['global_ms_per_frame']:.1f} ms per frame and template (1 thread)")


# ------------------------------------------------------------------------------------ part 2: in a prior patch

LOCALIZER = "xcorr_drone_micro"
PAIRS = DronePairConfig(aerial_px=64, query_px=64, alt_agl_m=(40.0, 50.0), coarse_error_m=16.0, margin_m=40.0,
                        photometric=False)
FINE_SUCCESS_M = 5.0


class _Concat:
    """Several pair datasets as one training set (keeps ``info`` for the trainer's kind check)."""

    def __init__(self, parts: list) -> None:
        import torch

        self.info = parts[0].info
        self._all = torch.utils.data.ConcatDataset(parts)

    def __len__(self) -> int:
        return len(self._all)

    def __getitem__(self, i: int):
        return self._all[i]


def train_localizer(work: Path, seed: int, count: int, epochs: int):
    """xcorr localizer trained on two training areas under random (never the test) conditions."""
    from edge_geoloc.config import from_dict
    from edge_geoloc.data.pairs import dataset_for_model
    from edge_geoloc.models import create_model
    from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, fit

    parts = []
    for k, style in enumerate(STYLES):
        root = work / f"train_{style}_s{seed}"
        if not (root / "dataset.json").is_file():
            area = generate_area(style, 500 + 10 * seed + k, AREA_M, GSD_M, condition=MAP_CONDITION)
            cfg = DronePairConfig(**{**PAIRS.__dict__, "count": count, "photometric": True, "random_conditions": 8})
            write_synthetic_drone_pairs(area, root, cfg, seed=seed * 100 + k)
        parts.append(dataset_for_model(root, create_model(LOCALIZER), read_ground_truth=True))
    cfg = from_dict(LocalizerTrainConfig, {
        "model": {"name": LOCALIZER}, "loss": {"sigma_px": 1.0, "infonce_weight": 1.0},
        "optim": {"lr": 1e-3, "epochs": epochs, "seed": seed}, "out_dir": str(work / f"model_s{seed}"),
        "log_every": 0, "resume": True, "data": {"train": str(work), "batch_size": 16}})
    return fit(cfg, _Concat(parts)).eval()


def test_pairs(work: Path, seed: int, count: int) -> dict[str, list[Path]]:
    """Per capture condition, labelled pairs over the seed's test areas (same poses under each condition)."""
    dirs: dict[str, list[Path]] = {c: [] for c in CAPTURES}
    for k, style in enumerate(STYLES):
        area = generate_area(style, 1000 + 10 * seed + k, AREA_M, GSD_M, condition=MAP_CONDITION)
        for capture in CAPTURES:
            root = work / f"test_{style}_s{seed}_{capture}"
            if not (root / "dataset.json").is_file():
                cfg = DronePairConfig(**{**PAIRS.__dict__, "count": count, "condition": capture})
                write_synthetic_drone_pairs(area, root, cfg, seed=seed * 100 + 50 + k)
            dirs[capture].append(root)
    return dirs


def ncc_pair_errors(root: Path) -> np.ndarray:
    """NCC of each pair's aligned query inside its aerial patch; metres from the truth."""
    info, records = read_pairs(root, read_ground_truth=True)
    errors = []
    for rec in records:
        aerial = read_image_rgb(root / rec.aerial)
        m = rec.aerial_georef.m_per_px
        matcher = NccMatcher(aerial, 0.0, 0.0, m, NccConfig(ground_size_m=32.0, m_per_px=m))
        template = matcher.prepare(read_image_rgb(root / rec.query), rec.heading_rad, rec.altitude_agl_m, rec.hfov_deg)
        best = matcher.locate(template)  # east = col * m, north = -row * m in the patch's frame
        errors.append(math.hypot(best.east_m / m - rec.gt_col, -best.north_m / m - rec.gt_row) * m)
    return np.asarray(errors)


def model_pair_errors(model, root: Path) -> np.ndarray:
    from torch.utils.data import DataLoader

    from edge_geoloc.data.pairs import dataset_for_model
    from edge_geoloc.evaluate.localization_metrics import predict

    dataset = dataset_for_model(root, model, read_ground_truth=True)
    rowcol = predict(model, DataLoader(dataset, batch_size=32, shuffle=False))["rowcol"]
    truth, m_per_px, _ = dataset.ground_truth()
    return np.linalg.norm(rowcol - truth, axis=1) * m_per_px


def centre_errors(root: Path) -> np.ndarray:
    _, records = read_pairs(root, read_ground_truth=True)
    return np.asarray([math.hypot(r.gt_row - r.aerial_georef.height_px / 2, r.gt_col - r.aerial_georef.width_px / 2)
                       * r.aerial_georef.m_per_px for r in records])


def run_fine(work: Path, seeds: list[int], train_count: int, epochs: int, test_count: int,
             on_seed=None) -> dict:
    import torch

    torch.set_num_threads(1)
    per_seed: list[dict] = []
    for seed in seeds:
        started = time.perf_counter()
        model = train_localizer(work, seed, train_count, epochs)
        train_s = time.perf_counter() - started
        dirs = test_pairs(work, seed, test_count)
        rows = {}
        for capture, roots in dirs.items():
            rows[capture] = {"ncc": np.concatenate([ncc_pair_errors(r) for r in roots]).tolist(),
                             "learned": np.concatenate([model_pair_errors(model, r) for r in roots]).tolist(),
                             "patch_centre": np.concatenate([centre_errors(r) for r in roots]).tolist()}
        per_seed.append({"seed": seed, "train_s": train_s, "errors": rows})
        if on_seed is not None:  # a long run keeps what it has measured
            on_seed({"per_seed": per_seed, "summary": summarise_fine(per_seed)})
    return {"per_seed": per_seed, "summary": summarise_fine(per_seed)}


def summarise_fine(per_seed: list[dict]) -> dict:
    """Per condition and method: success (< FINE_SUCCESS_M) mean/std over seeds, mean/median error, and the
    paired per-seed difference learned - NCC in success rate."""
    out = {}
    for capture in CAPTURES:
        out[capture] = {}
        for method in ("ncc", "learned", "patch_centre"):
            errs = [np.asarray(s["errors"][capture][method]) for s in per_seed]
            rates = [float(np.mean(e < FINE_SUCCESS_M)) for e in errs]
            pooled = np.concatenate(errs)
            out[capture][method] = {"success_mean": float(np.mean(rates)), "success_std": float(np.std(rates)),
                                    "mean_m": float(pooled.mean()), "median_m": float(np.median(pooled))}
        diffs = [float(np.mean(np.asarray(s["errors"][capture]["learned"]) < FINE_SUCCESS_M)
                       - np.mean(np.asarray(s["errors"][capture]["ncc"]) < FINE_SUCCESS_M)) for s in per_seed]
        out[capture]["learned_minus_ncc_success_per_seed"] = diffs
    return out


def print_fine(report: dict) -> None:
    print(f"\nFine localization in a 64 m prior patch, success = within {FINE_SUCCESS_M:.0f} m "
          f"(mean +- std over {len(report['per_seed'])} seed(s)); mean / median error in m")
    print(f"{'capture condition':<18}{'NCC':>26}{'learned (xcorr)':>26}{'patch centre':>26}  learned-NCC per seed")
    for capture, rows in report["summary"].items():
        cells = "".join(f"{100 * rows[m]['success_mean']:>7.1f}+-{100 * rows[m]['success_std']:<4.1f}% "
                        f"{rows[m]['mean_m']:>5.1f}/{rows[m]['median_m']:<5.1f}"
                        for m in ("ncc", "learned", "patch_centre"))
        diffs = " ".join(f"{100 * d:+.1f}" for d in rows["learned_minus_ncc_success_per_seed"])
        print(f"{capture:<18}{cells}  {diffs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/map_vs_flight.json")
    parser.add_argument("--work", default="runs/bench_map_vs_flight")
    parser.add_argument("--parts", choices=("all", "global", "fine"), default="all",
                        help="run one part and keep the other's figures already in --out (long runs in two sittings)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    seeds, frames = ([0], 20) if args.quick else ([0, 1, 2], 40)
    out = Path(args.out)
    report = json.loads(out.read_text()) if args.parts != "all" and out.is_file() else {}
    report.update({"profile": "quick" if args.quick else "full", "seeds": seeds, "frames_per_area_condition": frames,
                   "styles": list(STYLES), "map_condition": MAP_CONDITION, "area_m": AREA_M,
                   "templates_m": list(TEMPLATES_M), "machine": platform.platform()})
    if args.parts in ("all", "global"):
        started = time.perf_counter()
        report.update(run(seeds, frames), global_wall_s=time.perf_counter() - started,
                      global_date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        atomic_write_json(out, report)
        print_table(report)
    if args.parts in ("all", "fine"):
        started = time.perf_counter()
        train_count, epochs, test_count = (400, 4, 40) if args.quick else (800, 6, 60)

        def save(fine: dict) -> None:
            fine["sizes"] = {"train_pairs_per_style": train_count, "epochs": epochs,
                             "test_pairs_per_style_and_condition": test_count, "seeds_planned": seeds}
            fine["wall_s"] = time.perf_counter() - started
            fine["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            atomic_write_json(out, {**report, "fine": fine})

        report["fine"] = run_fine(Path(args.work) / ("quick" if args.quick else "full"), seeds, train_count, epochs,
                                  test_count, save)
        save(report["fine"])
        print_fine(report["fine"])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
