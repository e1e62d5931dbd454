"""Retrieval metrics exactly as the University-1652 baseline computes them, with both gallery protocols.

For each query the gallery is ranked by cosine similarity (descending; ties by gallery order, since the
reference's unstable sort leaves them undefined). With ``good`` the gallery items of the query's location
and ``r_1 < ... < r_n`` their 0-based ranks:

- CMC: ``cmc[k] = 1`` for ``k >= r_1``; ``R@k = mean_q cmc_q[k-1]``.
- ``R@1%`` is the reference's ``CMC[round(0.01 * |G|)]`` (note: index, so it is R@(round(0.01|G|)+1)) with
  ``|G|`` the full gallery size in both protocols, as in Sample4Geo's code.
- Trapezoid AP: ``AP = sum_i 1/n * (p_old_i + p_i) / 2`` with ``p_i = i/(r_i+1)`` (1-based i) and
  ``p_old_i = (i-1)/r_i`` (1 when ``r_i = 0``). One positive at rank r gives 1 at r = 0, else 1/(2(r+1)).
- A query with no positive in the gallery counts as 0 (R@k and AP) but stays in the mean, as in the
  reference; the count is reported as ``num_no_positive``.

Protocols: ``"distractors"`` (layumi's ``test.py``: all gallery images are ranked) and ``"junk_filtered"``
(Sample4Geo/DAC/CAMP/MEAN: gallery images whose location has no query are removed before ranking).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

PROTOCOLS = ("distractors", "junk_filtered")


@dataclass(frozen=True)
class RetrievalResult:
    """Metrics in percent."""

    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    recall_at_1pct: float
    ap: float
    num_queries: int
    num_gallery: int
    num_no_positive: int
    protocol: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def rank_gallery(scores: np.ndarray) -> np.ndarray:
    """Gallery order per query: descending score, ties by ascending gallery index. (Q, G) -> (Q, G)."""
    return np.argsort(-scores, axis=1, kind="stable")


def ap_and_first_rank(good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid AP and first positive rank (-1: none) from ``good`` (Q, G) in ranked order."""
    good = good.astype(bool)
    n_good = good.sum(axis=1)
    ranks = np.arange(good.shape[1], dtype=np.float64)[None, :]
    hits = np.cumsum(good, axis=1, dtype=np.float64)
    precision = hits / (ranks + 1.0)
    old_precision = np.where(ranks > 0, (hits - 1.0) / np.maximum(ranks, 1.0), 1.0)
    ap = np.where(good, 0.5 * (old_precision + precision), 0.0).sum(axis=1) / np.maximum(n_good, 1)
    first = np.where(n_good > 0, good.argmax(axis=1), -1)
    return np.where(n_good > 0, ap, 0.0), first


def junk_mask(query_labels: np.ndarray, gallery_labels: np.ndarray, protocol: str) -> np.ndarray:
    """Gallery items kept in the ranking: all of them, or only locations that have a query."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "distractors":
        return np.ones(len(gallery_labels), dtype=bool)
    return np.isin(gallery_labels, np.unique(query_labels))


def evaluate_retrieval(query_features: np.ndarray | torch.Tensor, query_labels: np.ndarray,
                       gallery_features: np.ndarray | torch.Tensor, gallery_labels: np.ndarray,
                       protocol: str = "distractors", chunk_size: int = 512) -> RetrievalResult:
    """R@1/5/10, R@1% and mean AP of L2-normalised features under ``protocol``."""
    q = torch.as_tensor(query_features, dtype=torch.float32)
    g = torch.as_tensor(gallery_features, dtype=torch.float32)
    q_labels, g_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D), got {tuple(q.shape)} and {tuple(g.shape)}")
    if len(q_labels) != len(q) or len(g_labels) != len(g):
        raise ValueError("one label per feature row is needed")
    n_full = len(g_labels)
    keep = junk_mask(q_labels, g_labels, protocol)
    g, g_labels = g[torch.from_numpy(keep)], g_labels[keep]
    aps, firsts = [], []
    for start in range(0, len(q), chunk_size):
        order = rank_gallery((q[start:start + chunk_size] @ g.t()).numpy())
        ap, first = ap_and_first_rank(g_labels[order] == q_labels[start:start + chunk_size, None])
        aps.append(ap)
        firsts.append(first)
    return _summarise(np.concatenate(aps), np.concatenate(firsts), n_full, protocol)


def _summarise(ap: np.ndarray, first: np.ndarray, n_gallery: int, protocol: str) -> RetrievalResult:
    found = first >= 0
    n_none = int((~found).sum())
    if n_none:
        log.warning("%d of %d queries have no positive in the gallery; they count as misses", n_none, len(ap))

    def recall(k: int) -> float:
        return 100.0 * float(np.mean(found & (first < k)))

    top1pct = round(n_gallery * 0.01)
    return RetrievalResult(recall(1), recall(5), recall(10), recall(top1pct + 1), 100.0 * float(ap.mean()),
                           len(ap), n_gallery, n_none, protocol)


def fuse_views(features: np.ndarray | torch.Tensor, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-view queries: mean of all features of one location, re-normalised -> (L, D), (L,)."""
    f = torch.as_tensor(features, dtype=torch.float32)
    labels = np.asarray(labels)
    unique, inverse = np.unique(labels, return_inverse=True)
    sums = torch.zeros(len(unique), f.shape[1]).index_add_(0, torch.from_numpy(inverse), f)
    return torch.nn.functional.normalize(sums, dim=1).numpy(), unique


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: torch.utils.data.Dataset, view: str, batch_size: int = 64,
                     device: torch.device | str = "cpu", num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and labels of an ``ImageListDataset`` (unreadable images are left out and logged)."""
    from edge_geoloc.data.sampler import collate_images

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_images)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for images, batch_labels, _ in loader:
        if len(images):
            feats.append(model.encode(images.to(device), view).float().cpu())
            labels.append(batch_labels)
    model.train(was_training)
    if not feats:
        raise ValueError(f"no readable {view} images to evaluate")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def evaluate_folders(model: torch.nn.Module, folders, batch_size: int = 64, device: torch.device | str = "cpu",
                     multi_view: bool = False, num_workers: int = 0, prepare_drone=None) -> dict[str, dict]:
    """Both directions x both protocols on a reader's test split (``University1652`` / ``SUES200``).

    ``prepare_drone(path, image)`` prepares every drone image first (the on-board protocol's alignment).
    Keys ``"<direction>/<protocol>"``; with ``multi_view`` also ``"drone_to_satellite_multiview/<protocol>"``
    (all drone views of a location fused into one query), reported apart from single-image results.
    """
    from edge_geoloc.data.sampler import ImageListDataset

    prep = (model.input_size, model.mean, model.std)
    results: dict[str, dict] = {}
    for direction in ("drone_to_satellite", "satellite_to_drone"):
        query, gallery = folders.test_split(direction)
        q_view, g_view = direction.split("_to_")
        q_prep, g_prep = (prepare_drone if view == "drone" else None for view in (q_view, g_view))
        qf, ql = extract_features(model, ImageListDataset(query, *prep, q_prep), q_view, batch_size, device,
                                  num_workers)
        gf, gl = extract_features(model, ImageListDataset(gallery, *prep, g_prep), g_view, batch_size, device,
                                  num_workers)
        for protocol in PROTOCOLS:
            results[f"{direction}/{protocol}"] = evaluate_retrieval(qf, ql, gf, gl, protocol).as_dict()
            if multi_view and direction == "drone_to_satellite":
                fq, fl = fuse_views(qf, ql)
                key = f"{direction}_multiview/{protocol}"
                results[key] = evaluate_retrieval(fq, fl, gf, gl, protocol).as_dict()
    return results
