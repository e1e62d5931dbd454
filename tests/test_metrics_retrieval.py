"""Retrieval metrics against hand-computed University-1652-baseline values (trapezoid AP, CMC, R@1%)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_geoloc.evaluate.retrieval_metrics import ap_and_first_rank, evaluate_retrieval, fuse_views


def one_hot(rows: list[int], dim: int) -> np.ndarray:
    f = np.zeros((len(rows), dim), np.float32)
    f[np.arange(len(rows)), rows] = 1.0
    return f


def test_single_positive_ap_is_one_over_twice_rank() -> None:
    good = np.zeros((4, 6), bool)
    for q, r in enumerate([0, 1, 2, 5]):
        good[q, r] = True
    ap, first = ap_and_first_rank(good)
    assert np.allclose(ap, [1.0, 1 / 4, 1 / 6, 1 / 12])
    assert first.tolist() == [0, 1, 2, 5]


def test_several_positives_trapezoid_ap() -> None:
    # positives at ranks 1 and 3: 1/2 * [(0 + 1/2)/2] + 1/2 * [(1/3 + 2/4)/2] = 0.125 + 0.208333
    ap, first = ap_and_first_rank(np.array([[0, 1, 0, 1, 0]], bool))
    assert ap[0] == pytest.approx(0.125 + 5 / 24)
    assert first[0] == 1
    ap, _ = ap_and_first_rank(np.array([[1, 1, 0]], bool))  # perfect ranking
    assert ap[0] == pytest.approx(1.0)


def test_recalls_ap_and_no_positive_counted_as_miss() -> None:
    # gallery: 4 items with labels 0..3 on axes 0..3; queries point at their item with some confusion
    gallery = one_hot([0, 1, 2, 3], 4)
    g_labels = np.array([0, 1, 2, 3])
    queries = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 0.2, 0.9], [0, 0, 0, 1]], np.float32)
    q_labels = np.array([0, 1, 2, 7])  # label 7 has no gallery item
    res = evaluate_retrieval(queries, q_labels, gallery, g_labels, "distractors")
    # first ranks: q0 -> 0, q1 -> 1, q2 -> 1, q3 -> none
    assert res.recall_at_1 == pytest.approx(25.0)
    assert res.recall_at_5 == pytest.approx(75.0)
    assert res.ap == pytest.approx(100 * (1 + 0.25 + 0.25 + 0) / 4)
    assert res.num_no_positive == 1 and res.num_queries == 4
    assert res.recall_at_1pct == pytest.approx(25.0)  # CMC[round(0.04)] = CMC[0]


def test_ties_are_broken_by_gallery_order() -> None:
    gallery = np.array([[1, 0], [1, 0], [0, 1]], np.float32)  # items 0 and 1 tie for the query
    query = np.array([[1, 0]], np.float32)
    assert evaluate_retrieval(query, np.array([1]), gallery, np.array([0, 1, 2])).recall_at_1 == 0.0
    assert evaluate_retrieval(query, np.array([0]), gallery, np.array([0, 1, 2])).recall_at_1 == 100.0


def test_junk_filtered_protocol_removes_distractor_locations() -> None:
    # the distractor (label 9) outranks the true match: it costs R@1 only in the "distractors" protocol
    gallery = np.array([[1, 0], [0.8, 0.6]], np.float32)
    query = np.array([[0.8, 0.6]], np.float32)
    labels_g = np.array([9, 0])
    with_distractors = evaluate_retrieval(query, np.array([0]), gallery[::-1].copy(), labels_g[::-1].copy())
    assert with_distractors.recall_at_1 == 100.0
    query2 = np.array([[1, 0]], np.float32)
    d = evaluate_retrieval(query2, np.array([0]), gallery, labels_g, "distractors")
    j = evaluate_retrieval(query2, np.array([0]), gallery, labels_g, "junk_filtered")
    assert (d.recall_at_1, d.ap) == (0.0, 25.0)
    assert (j.recall_at_1, j.ap) == (100.0, 100.0)
    assert j.num_gallery == d.num_gallery == 2  # R@1% uses the full gallery size, as the reference code


def test_recall_at_one_percent_uses_reference_index() -> None:
    # 951 gallery items -> CMC[round(9.51)] = CMC[10]: a first hit at rank 10 (0-based) counts, rank 11 not
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(951, 16)).astype(np.float32)
    labels = np.arange(951)
    q = gallery[:1] * 0.0 + 1.0
    scores = gallery @ q[0]
    order = np.argsort(-scores, kind="stable")
    for rank, expected in [(10, 100.0), (11, 0.0)]:
        res = evaluate_retrieval(q, np.array([labels[order[rank]]]), gallery, labels)
        assert res.recall_at_1pct == expected


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="features must be"):
        evaluate_retrieval(np.zeros((2, 3)), np.zeros(2), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="protocol"):
        evaluate_retrieval(np.zeros((1, 3)), np.zeros(1), np.zeros((2, 3)), np.zeros(2), "best")


def test_multi_view_fusion_averages_per_location() -> None:
    feats = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    fused, labels = fuse_views(feats, np.array([5, 5, 2]))
    assert labels.tolist() == [2, 5]
    assert np.allclose(fused, [[1, 0], [2 ** -0.5, 2 ** -0.5]])
