"""Area adaptation in the paper's ground-panorama setting: a car's learned BEV matcher adapted from coarse-GPS pairs.

Teacher: the learned BEV matcher of ``benchmarks/ground_localizer.py`` (full profile, matcher seed 1: trained on
8 'source'-style areas under random conditions, position loss); it is trained here if its cache is missing.

Per seed, the target (``TARGETS``): NEW areas whose map is ``summer_map`` and whose drive is seen under another
condition (``winter``: the training layout family in winter, snow, low sun, another sensor; ``hard``: the
'target' style, another layout family, under ``autumn_flight``). Panoramas along roads, the BEV from the
measured heading (2 deg noise), the 64 m tile (0.5 m/px) cut around a coarse fix up to 16 m off per axis:
- ``adapt``: unlabelled pairs (two areas); adaptation reads only the BEVs and tiles
  (:mod:`edge_geoloc.train.matcher_adaptation`); the ceiling row fine-tunes on their TRUE positions;
- ``val`` (labelled, only to choose the stopping step of the "stopped on validation" row) and ``test`` (labelled),
  each from its own new area;
- ``source``: new views in the teacher's training areas under their own conditions (forgetting).

Rows: teacher; ceiling; self-distillation on every mode label (the paper's "+ mode labels" ablation, no
filtering); the method (+ outlier filtering by the auxiliary student, T = 80 % by distance quantile); the method
stopped on labelled validation. Paired bootstrap 95 % intervals of the mean error change and ratio against the
teacher (test pairs resampled within each seed); the AUROC of the confidence (softmax mass within 5 m of the
mode) for "error < 5 m"; the source error before and after. Chance: the patch centre (the coarse fix).

    python benchmarks/adaptation_ground.py --quick      # 1 seed, 300 adaptation pairs, winter target
    python benchmarks/adaptation_ground.py              # 3 seeds, 1000 adaptation pairs, 200 test pairs, both targets
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ground_localizer as gl  # noqa: E402

from edge_geoloc.artifacts import atomic_write_json  # noqa: E402
from edge_geoloc.data.ground_bev_pairs import CoarsePairs, coarse_pairs, render_views  # noqa: E402
from edge_geoloc.evaluate.statistics import auroc, paired_bootstrap  # noqa: E402
from edge_geoloc.sim.area import capture_area, generate_area  # noqa: E402
from edge_geoloc.sim.onboard_pairs import AreaPair  # noqa: E402
from edge_geoloc.train.matcher_adaptation import (  # noqa: E402
    MatcherAdaptConfig,
    adapt_matcher,
    ceiling,
    fine_tune,
    mode_errors_m,
)

TARGETS = {"winter": ("source", "winter_flight"), "hard": ("target", "autumn_flight")}
PROFILES = {
    "quick": dict(adapt_per_area=150, val=60, test=100, source=100, seeds=(1,), targets=("winter",)),
    "full": dict(adapt_per_area=500, val=100, test=200, source=200, seeds=(1, 2, 3), targets=("winter", "hard")),
}
ADAPT = MatcherAdaptConfig(steps=200, batch_size=16, lr=2e-4, sigma_m=1.0, aux_sigma_m=4.0, keep_quantile=0.8,
                           validate_every=25)
TEACHER_SEED = 1


def teacher(path: str | None = None):
    """The BEV matcher checkpoint at ``path``, else the full-profile one of ``ground_localizer.py`` (cached there;
    trained if missing)."""
    if path:
        from edge_geoloc.models.checkpoint import load_model

        return load_model(path, expected_kind="matcher")[0]
    work = Path("runs/bench_ground/full")
    heldout = gl.test_pairs(work, 0, "ground_pano", 100)[gl.GAP_CONDITION][0]
    model, _ = gl.train_bev_matcher(work, TEACHER_SEED, gl.BEV_MATCHER["full"], heldout, gl.BEV_PAIRS["full"])
    return model


def target_pairs(style: str, drive: str, seed: int, k: int, views: int) -> CoarsePairs:
    """``views`` coarse-GPS pairs in one new area (seed ``7000 + 10 seed + k``) under ``drive``."""
    area = generate_area(style, 7000 + 10 * seed + k, 280.0, 0.5, condition=gl.MAP_CONDITION)
    cfg = replace(gl.BEV_PAIRS["full"], views_per_area=views, seed=seed * 10 + k)
    return coarse_pairs(render_views(cfg, [AreaPair(area, capture_area(area, drive))]), cfg, seed=seed * 10 + k)


def merged(parts: list[CoarsePairs]) -> CoarsePairs:
    return CoarsePairs(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("bevs", "tiles", "truth", "area")))


def source_pairs(views: int) -> CoarsePairs:
    """New poses in the teacher's own training areas, under their training conditions."""
    cfg = replace(gl.BEV_PAIRS["full"], views_per_area=max(1, views // gl.BEV_PAIRS["full"].n_areas), seed=77)
    return coarse_pairs(render_views(cfg), cfg, seed=77)


def errors(model, pairs: CoarsePairs) -> tuple[np.ndarray, np.ndarray]:
    """(metres from the truth, confidence) of the best window per pair."""
    return mode_errors_m(model, pairs, ADAPT.temperature, ADAPT.confidence_radius_m)


def run_seed(work: Path, teacher_model, target: str, seed: int, size: dict, source: CoarsePairs) -> dict:
    style, drive = TARGETS[target]
    t0 = time.perf_counter()
    adapt_set = merged([target_pairs(style, drive, seed, k, size["adapt_per_area"]) for k in (0, 1)])
    val, test = target_pairs(style, drive, seed, 2, size["val"]), target_pairs(style, drive, seed, 3, size["test"])
    render_s = time.perf_counter() - t0
    cfg = replace(ADAPT, seed=seed)
    out = work / f"{target}_s{seed}"
    method = adapt_matcher(teacher_model, adapt_set, cfg, out / "method", validate=lambda m: errors(m, val)[0].mean())
    plain, _ = fine_tune(teacher_model, adapt_set, method.pseudo, cfg.sigma_m, cfg, out / "plain")
    models = {"teacher": teacher_model, "ceiling": ceiling(teacher_model, adapt_set, cfg, out / "ceiling"),
              "self_distillation": plain, "method": method.student, "method_stopped_on_val": method.selected}
    scored = {name: errors(m, test) for name, m in models.items()}
    pseudo_err = np.hypot(*(method.pseudo - adapt_set.truth).T) * teacher_model.m_per_px  # scoring only
    return {"seed": seed, "target": target, "render_s": render_s, "train_eval_s": time.perf_counter() - t0 - render_s,
            "test_errors": {n: e.tolist() for n, (e, _) in scored.items()},
            "test_confidence": {n: c.tolist() for n, (_, c) in scored.items()},
            "centre_m": (np.hypot(*(test.truth - teacher_model.tile_px / 2).T) * teacher_model.m_per_px).tolist(),
            "source_mean_m": {n: float(errors(models[n], source)[0].mean()) for n in ("teacher", "method")},
            "pseudo_labels": {"n": int(len(pseudo_err)), "kept": int(method.kept.sum()),
                              "error_mean_m_all": float(pseudo_err.mean()),
                              "error_mean_m_kept": float(pseudo_err[method.kept].mean()),
                              "outliers_over_5m_all": float(np.mean(pseudo_err > 5)),
                              "outliers_over_5m_kept": float(np.mean(pseudo_err[method.kept] > 5))}}


def summarise(per_seed: list[dict]) -> dict:
    names = list(per_seed[0]["test_errors"])
    groups = np.concatenate([[i] * len(r["test_errors"]["teacher"]) for i, r in enumerate(per_seed)])
    pooled = {n: np.concatenate([r["test_errors"][n] for r in per_seed]) for n in names}
    rows = {}
    for n in names:
        conf = np.concatenate([r["test_confidence"][n] for r in per_seed])
        rows[n] = {"mean_m": float(pooled[n].mean()), "median_m": float(np.median(pooled[n])),
                   "per_seed_mean_m": [float(np.mean(r["test_errors"][n])) for r in per_seed],
                   "auroc_within_5m": auroc(conf, pooled[n] < 5.0), "within_5m": float(np.mean(pooled[n] < 5.0))}
        if n != "teacher":
            rows[n]["vs_teacher"] = paired_bootstrap(pooled["teacher"], pooled[n], groups)
    centre = np.concatenate([r["centre_m"] for r in per_seed])
    source = {n: float(np.mean([r["source_mean_m"][n] for r in per_seed])) for n in ("teacher", "method")}
    return {"rows": rows, "patch_centre_mean_m": float(centre.mean()), "source_mean_m": source}


def print_table(target: str, summary: dict) -> None:
    print(f"\n{target}: mean / median m (patch centre, chance: {summary['patch_centre_mean_m']:.2f} m mean)")
    for name, r in summary["rows"].items():
        ci = r.get("vs_teacher")
        ratio = f"  ratio {ci['ratio']:.3f} [{ci['ratio_ci95'][0]:.3f}, {ci['ratio_ci95'][1]:.3f}]" if ci else ""
        print(f"  {name:<22} {r['mean_m']:.2f} / {r['median_m']:.2f}  AUROC {r['auroc_within_5m']:.3f}{ratio}")
    s = summary["source_mean_m"]
    print(f"  source area mean: teacher {s['teacher']:.2f} m -> method {s['method']:.2f} m")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--teacher", default=None, help="a BEV matcher checkpoint (default: ground_localizer's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(1)
    profile = "quick" if args.quick else "full"
    size = PROFILES[profile]
    targets, seeds = args.targets or size["targets"], args.seeds or size["seeds"]
    work = Path("runs/bench_adaptation_ground") / profile
    started = time.perf_counter()
    teacher_model = teacher(args.teacher)
    source = source_pairs(size["source"])
    tag = "" if args.targets is None and args.seeds is None else "_" + "_".join(targets + [f"s{s}" for s in seeds])
    out = args.out or f"benchmarks/results/adaptation_ground{'_quick' if args.quick else ''}{tag}.json"
    results: dict = {}
    for target in targets:
        per_seed = []
        for seed in seeds:  # the JSON is rewritten after every seed: a stopped run keeps what it measured
            per_seed.append(run_seed(work, teacher_model, target, seed, size, source))
            results[target] = {"summary": summarise(per_seed), "per_seed": per_seed,
                               "complete": len(per_seed) == len(seeds)}
            write_report(out, args, profile, size, targets, results, started)
        print_table(target, results[target]["summary"])
    print(f"\nwrote {out} ({time.perf_counter() - started:.0f} s)")
    return 0


def write_report(out: str, args, profile: str, size: dict, targets: list[str], results: dict, started: float) -> None:
    atomic_write_json(out, {"benchmark": "adaptation_ground", "profile": profile, "size": size,
                            "adapt": asdict(ADAPT), "targets": {t: TARGETS[t] for t in targets},
                            "teacher": args.teacher or {"benchmark": "ground_localizer full",
                                                        "matcher_seed": TEACHER_SEED},
                            "results": results, "wall_s": time.perf_counter() - started,
                            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "python": platform.python_version()})


if __name__ == "__main__":
    raise SystemExit(main())
