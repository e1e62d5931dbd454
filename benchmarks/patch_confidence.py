"""Does the localizer's heat map know "not in this patch"? AUROC of confidence scores on held-out pairs.

Held-out pairs are rendered on a test area the localizer never saw (``relocalization_setup.TEST_AREAS[0]``),
the map under ``summer_map`` and the views under ``autumn_flight`` (the realistic map-vs-flight gap):
half with the aerial patch around a coarse fix 16 m from the truth (as trained), half with a coarse fix up to
100 m away, so most of those queries lie outside the patch. A heat map is *right* when its mode is within 5 m
of the truth. For each confidence score the AUROC of "right" against everything else is reported (0.5 =
chance), and also the AUROC of "the truth is inside the patch" (pure in-patch / off-patch separation).

Scores: ``peak_mass`` (probability within 10 m of the mode: the pipeline's confidence), ``likelihood_ratio``
(``n * max p``: the particle filter's ratio against a uniform background at the mode), ``neg_entropy`` and
``peak_to_second`` (the mode over the best value further than 10 m from it: distinctiveness), plus the
classical ``ncc_peak`` (the best normalised cross-correlation of the aligned query over the patch).

    python benchmarks/patch_confidence.py [--quick]      # JSON: benchmarks/results/patch_confidence.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from relocalization_setup import FLIGHT_CONDITION, TEST_AREAS, prepare_models, prepare_test_areas  # noqa: E402

from edge_geoloc.artifacts import atomic_write_json  # noqa: E402
from edge_geoloc.config import from_dict  # noqa: E402
from edge_geoloc.data.pairs import DronePairConfig, dataset_for_model, write_synthetic_drone_pairs  # noqa: E402
from edge_geoloc.models.checkpoint import load_model  # noqa: E402
from edge_geoloc.sim import load_area  # noqa: E402

log = logging.getLogger("benchmarks.patch_confidence")
CORRECT_M, PEAK_RADIUS_M = 5.0, 10.0


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a positive outranks a negative (Mann-Whitney U, ties counted half)."""
    pos, neg = scores[labels], scores[~labels]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1.0
    all_scores = np.concatenate([pos, neg])
    for value in np.unique(all_scores):  # average ranks of ties
        tie = all_scores == value
        ranks[tie] = ranks[tie].mean()
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def bootstrap_interval(scores: np.ndarray, labels: np.ndarray, rounds: int = 200, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(scores), len(scores))
        values.append(auroc(scores[idx], labels[idx]))
    return [round(float(np.nanpercentile(values, q)), 3) for q in (2.5, 97.5)]


def heatmap_scores(p: np.ndarray, m_per_px: float) -> dict[str, float]:
    """Confidence scores of one heat map (module doc); ``p`` sums to 1."""
    r, c = np.unravel_index(int(np.argmax(p)), p.shape)
    rows, cols = np.mgrid[0:p.shape[0], 0:p.shape[1]]
    near = (rows - r) ** 2 + (cols - c) ** 2 <= (PEAK_RADIUS_M / m_per_px) ** 2
    second = float(p[~near].max()) if (~near).any() else 0.0
    return {"peak_mass": float(p[near].sum()), "likelihood_ratio": float(p.size * p.max()),
            "neg_entropy": float(np.sum(p * np.log(np.maximum(p, 1e-30)))),
            "peak_to_second": float(np.log(p.max() / max(second, 1e-30)))}


def ncc_peak(query: torch.Tensor, aerial: torch.Tensor) -> float:
    """Best normalised cross-correlation of the (aligned, normalised) query over the aerial patch, grey."""
    q = query.mean(0).numpy().astype(np.float32)
    a = aerial.mean(0).numpy().astype(np.float32)
    if q.shape[0] >= a.shape[0]:
        q = cv2.resize(q, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return float(cv2.matchTemplate(a, q, cv2.TM_CCOEFF_NORMED).max())


def make_pairs(work: Path, area_dir: Path, count: int) -> dict[str, Path]:
    area = load_area(area_dir)
    base = {"count": count, "aerial_size_m": 64.0, "aerial_px": 64, "query_px": 64, "alt_agl_m": [40.0, 50.0],
            "margin_m": 100.0, "condition": FLIGHT_CONDITION}
    out = {}
    for name, coarse_m, seed in (("near", 16.0, 7001), ("far", 100.0, 7002)):
        out[name] = work / f"{name}_{count}"
        if not (out[name] / "dataset.json").is_file():
            write_synthetic_drone_pairs(area, out[name], from_dict(DronePairConfig, {**base,
                                                                                     "coarse_error_m": coarse_m}),
                                        seed=seed)
    return out


@torch.no_grad()
def score_pairs(model: torch.nn.Module, root: Path) -> dict[str, np.ndarray]:
    ds = dataset_for_model(root, model, read_ground_truth=True)
    gt_rowcol, m_per_px, _ = ds.ground_truth()
    rows: dict[str, list[float]] = {}
    for i in range(len(ds)):
        item = ds[i]
        heatmap = model(item["query"][None], item["aerial"][None]).heatmap[0].double().numpy()
        heatmap = heatmap.reshape(heatmap.shape[-2:])  # (H, W), whether the model keeps a channel axis or not
        heatmap /= heatmap.sum()
        mode = np.array(np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)) + 0.5
        scale = heatmap.shape[0] / ds.aerial_size  # heat map pixels per resized aerial pixel
        gt = gt_rowcol[i] * scale
        mpp = m_per_px[i] / scale
        values = heatmap_scores(heatmap, mpp)
        values["ncc_peak"] = ncc_peak(item["query"], item["aerial"])
        values["error_m"] = float(np.hypot(*(mode - gt)) * mpp)
        values["in_patch"] = float(np.all((gt >= 0) & (gt < heatmap.shape[0])))
        for k, v in values.items():
            rows.setdefault(k, []).append(v)
    return {k: np.asarray(v) for k, v in rows.items()}


def summarize(data: dict[str, np.ndarray]) -> dict:
    right = data["error_m"] < CORRECT_M
    inside = data["in_patch"] > 0.5
    scores = ("peak_mass", "likelihood_ratio", "neg_entropy", "peak_to_second", "ncc_peak")
    return {"pairs": int(len(right)), "right_within_5m": int(right.sum()), "in_patch": int(inside.sum()),
            "chance_auroc": 0.5,
            "auroc_right_within_5m": {s: {"auroc": round(auroc(data[s], right), 3),
                                          "ci95": bootstrap_interval(data[s], right)} for s in scores},
            "auroc_in_patch": {s: round(auroc(data[s], inside), 3) for s in scores},
            "median_error_in_patch_m": float(np.median(data["error_m"][inside])) if inside.any() else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 pairs per set instead of 300")
    parser.add_argument("--cache", default=".cache/relocalization")
    parser.add_argument("--out", default="benchmarks/results/patch_confidence.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    t0 = time.monotonic()
    cache = Path(args.cache)
    models = prepare_models(cache)
    area = prepare_test_areas(cache, models)[0]
    count = 100 if args.quick else 300
    sets = make_pairs(cache / "confidence_pairs" / f"{area.name}_{FLIGHT_CONDITION}", area.area_dir, count)
    model = load_model(models.localizer_checkpoint, expected_kind="localizer")[0].eval()
    parts = [score_pairs(model, root) for root in sets.values()]
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    result = {"benchmark": "patch_confidence", "mode": "quick" if args.quick else "full",
              "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "test_area": area.name,
              "train_area_not_tested": True, "model": "xcorr_drone_micro (relocalization_setup)",
              "test_areas_known": [f"{s}{k}" for s, k in TEST_AREAS], "correct_m": CORRECT_M,
              **summarize(data), "wall_s": round(time.monotonic() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, json.loads(json.dumps(result)))
    print(json.dumps({k: result[k] for k in ("pairs", "right_within_5m", "in_patch", "auroc_right_within_5m",
                                             "auroc_in_patch")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
