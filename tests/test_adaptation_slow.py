"""Slow end-to-end test: a small cross-correlation teacher trained for seconds in a source-style area localizes
far better than the coarse fix (answering the patch centre) in that area and in a target-style area, and
adapting it without labels to the target area keeps it there.

Adaptation's own gain is small and not robust at this scale (benchmarks/adaptation.py --quick: -4% mean,
+0.1 m median), so it is not asserted here; the test guards against the failure that mattered: a teacher
worse than the coarse fix, and an adaptation that breaks a working teacher."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from edge_geoloc.config import from_dict
from edge_geoloc.data.pairs import DronePairConfig, dataset_for_model, write_synthetic_drone_pairs
from edge_geoloc.evaluate.localization_metrics import evaluate_dataset
from edge_geoloc.models import create_model
from edge_geoloc.sim import generate_area
from edge_geoloc.train.adaptation import AdaptConfig, adapt
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, fit

PAIRS = DronePairConfig(aerial_px=64, query_px=64, photometric=False, margin_m=50.0)
MODEL = "xcorr_drone_micro"


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _labelled(path):
    return dataset_for_model(path, create_model(MODEL), read_ground_truth=True)


def _centre_median_m(dataset) -> float:
    rowcol, m_per_px, _ = dataset.ground_truth()
    return float(np.median(np.linalg.norm(rowcol - 0.5 * dataset.aerial_size, axis=1) * m_per_px))


@pytest.mark.slow
def test_teacher_beats_the_coarse_fix_and_adaptation_keeps_it(tmp_path):
    source = generate_area("source", 1, size_m=500.0)
    target = generate_area("target", 2, size_m=500.0)
    write_synthetic_drone_pairs(source, tmp_path / "src", replace(PAIRS, count=400), seed=10)
    write_synthetic_drone_pairs(source, tmp_path / "src_test", replace(PAIRS, count=60), seed=11)
    write_synthetic_drone_pairs(target, tmp_path / "tgt_train", replace(PAIRS, count=200), seed=20,
                                with_ground_truth=False)
    write_synthetic_drone_pairs(target, tmp_path / "tgt_test", replace(PAIRS, count=80), seed=21)
    cfg = from_dict(LocalizerTrainConfig, {
        "model": {"name": MODEL}, "loss": {"sigma_px": 1.0, "infonce_weight": 1.0},
        "optim": {"lr": 1e-3, "epochs": 2, "seed": 17}, "out_dir": str(tmp_path / "teacher"), "log_every": 0,
        "data": {"batch_size": 16}})
    teacher = fit(cfg, _labelled(tmp_path / "src")).eval()
    adapt_cfg = AdaptConfig(sigma_px=2.0, aux_epochs=2, student_epochs=3, lr=3e-4, supervised_levels=3)
    result = adapt(teacher, dataset_for_model(tmp_path / "tgt_train", teacher), adapt_cfg)
    src_test, tgt_test = _labelled(tmp_path / "src_test"), _labelled(tmp_path / "tgt_test")
    src_centre, tgt_centre = _centre_median_m(src_test), _centre_median_m(tgt_test)
    src = evaluate_dataset(teacher, src_test)
    before, after = evaluate_dataset(teacher, tgt_test), evaluate_dataset(result.student, tgt_test)
    print(f"median error, source: centre {src_centre:.2f} m, teacher {src['median_m']:.2f} m; target: centre "
          f"{tgt_centre:.2f} m, teacher {before['median_m']:.2f} m (mean {before['mean_m']:.2f}) -> student "
          f"{after['median_m']:.2f} m (mean {after['mean_m']:.2f})")
    assert src["median_m"] < 0.2 * src_centre, "teacher does not clearly beat the coarse fix in its own area"
    assert before["median_m"] < 0.3 * tgt_centre, "teacher does not clearly beat the coarse fix in a new area"
    assert after["median_m"] < 0.3 * tgt_centre and after["mean_m"] < before["mean_m"] + 1.0
    assert result.report["kept"] == 160
