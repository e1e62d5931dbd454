"""Adaptation by self-distillation: no target ground truth is read, filtering keeps the T% closest, labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from edge_geoloc.data.pairs import PairWriter
from edge_geoloc.geo import PatchGeoref
from edge_geoloc.models import create_model
from edge_geoloc.train.adaptation import (
    AdaptConfig,
    PseudoLabels,
    adapt,
    keep_closest,
    open_target,
    pseudo_targets,
)

GEOREF = PatchGeoref(32631, (1.0, 0.0, 500000.0, 0.0, -1.0, 5760000.0), 64, 64)


def _target_set(root, gt_rows, gt_cols):
    """Same images and metadata every time (fixed seed); only the ground-truth fields differ."""
    rng = np.random.default_rng(3)
    with PairWriter(root, "drone", 64.0, 64) as w:
        for i, (row, col) in enumerate(zip(gt_rows, gt_cols, strict=True)):
            w.add(f"{i:03d}", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                  rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), GEOREF, 52.0, 4.36,
                  heading_rad=float(rng.uniform(0, 2 * math.pi)), gt_row=row, gt_col=col)
    return root


def test_garbage_target_ground_truth_gives_the_identical_student(tmp_path):
    n = 12
    true_rows = np.random.default_rng(0).uniform(20, 44, (2, n))
    garbage = np.random.default_rng(1).uniform(-1e6, 1e6, (2, n))
    cfg = AdaptConfig(aux_epochs=1, student_epochs=1, batch_size=4, keep_fraction=0.75)
    torch.manual_seed(0)
    teacher = create_model("ccvpe_drone_micro")
    students, reports = [], []
    for name, (rows, cols) in (("true", true_rows), ("garbage", garbage)):
        target = open_target(_target_set(tmp_path / name, rows, cols), teacher, cfg)
        result = adapt(teacher, target, cfg, out_dir=tmp_path / f"out_{name}")
        students.append(result.student.state_dict())
        reports.append(result.report)
    assert students[0].keys() == students[1].keys()
    for key in students[0]:
        assert torch.equal(students[0][key], students[1][key]), key
    assert not torch.equal(students[0]["aerial_descriptor.mix.weight"],
                           teacher.state_dict()["aerial_descriptor.mix.weight"])  # it trained
    assert reports[0]["kept"] == reports[1]["kept"] == 9
    saved = json.loads((tmp_path / "out_true" / "report.json").read_text())
    assert saved["samples"] == n and sum(saved["distance_histogram"]["counts"]) == n
    assert {"teacher_vs_student", "teacher_vs_auxiliary", "distance_threshold_m"} <= saved.keys()
    assert (tmp_path / "out_true" / "student.safetensors").is_file()


def test_adapt_refuses_a_target_opened_with_ground_truth(tmp_path):
    from edge_geoloc.data.pairs import PairDataset

    teacher = create_model("ccvpe_drone_micro")
    root = _target_set(tmp_path / "t", [30.0], [30.0])
    labelled = PairDataset(root, (64, 64), 64, teacher.mean, teacher.std, read_ground_truth=True)
    with pytest.raises(ValueError, match="read_ground_truth=False"):
        adapt(teacher, labelled, AdaptConfig())


def test_keep_closest_is_rank_based_and_survives_ties():
    d = np.array([0.0, 0.0, 0.0, 0.0, 5.0])
    assert keep_closest(d, 0.8).tolist() == [0, 1, 2, 3]  # a strict d < quantile(0.8) = 0 would keep none
    assert keep_closest(np.array([3.0, 1.0, 2.0, 9.0, 0.5]), 0.6).tolist() == [1, 2, 4]
    with pytest.raises(ValueError, match="keep_fraction"):
        AdaptConfig(keep_fraction=1.5)


def test_mode_based_pseudo_labels_are_gaussians_at_the_teacher_mode_on_coarse_levels():
    model = create_model("ccvpe_drone_micro", num_orientations=4)
    labels = PseudoLabels(modes=np.array([[10.5, 40.5], [60.5, 3.5]]))
    targets = pseudo_targets(model, labels, sigma_px=4.0)({"index": torch.tensor([1, 0]),
                                                           "heading_rad": torch.tensor([0.0, math.pi / 2])})
    assert targets.heatmap[1, 10, 40] == pytest.approx(1.0)  # batch item 1 is sample 0
    coarse = targets.levels[0]  # (B, O, 4, 4), 16 px cells
    assert coarse.shape == (2, 4, 4, 4)
    assert coarse[0, 0, 3, 0] == pytest.approx(1.0) and coarse[0, 1:].abs().sum() == 0  # heading 0 -> bin 0
    assert coarse[1, 1, 0, 2] == pytest.approx(1.0) and coarse[1, 0].abs().sum() == 0  # 90 deg -> bin 1


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core box two threads per process thrash (measured 75x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
