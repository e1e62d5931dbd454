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
    keep_within_quantile,
    open_target,
    pseudo_targets,
    sigma_px_for,
    student_objective,
)
from edge_geoloc.train.adaptation_inputs import AdaptationInputError, RolledPanoramas

GEOREF = PatchGeoref(32631, (1.0, 0.0, 500000.0, 0.0, -1.0, 5760000.0), 64, 64)


def _target_set(root, gt_rows, gt_cols, georef=GEOREF, coarse=None, size_m=64.0):
    """Same images and metadata every time (fixed seed); only the ground-truth fields differ. The coarse fix is
    the patch centre unless ``coarse`` (lat, lon) is given."""
    rng = np.random.default_rng(3)
    lat, lon = coarse or georef.pixel_to_latlon(georef.height_px / 2, georef.width_px / 2)
    with PairWriter(root, "drone", size_m, georef.height_px) as w:
        for i, (row, col) in enumerate(zip(gt_rows, gt_cols, strict=True)):
            w.add(f"{i:03d}", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                  rng.integers(0, 255, (georef.height_px, georef.width_px, 3), dtype=np.uint8), georef,
                  float(lat), float(lon), heading_rad=float(rng.uniform(0, 2 * math.pi)), gt_row=row, gt_col=col,
                  altitude_agl_m=40.0, hfov_deg=60.0)
    return root


def test_garbage_target_ground_truth_gives_the_identical_student(tmp_path):
    n = 12
    true_rows = np.random.default_rng(0).uniform(20, 44, (2, n))
    garbage = np.random.default_rng(1).uniform(-1e6, 1e6, (2, n))
    cfg = AdaptConfig(aux_epochs=1, student_epochs=1, batch_size=4, keep_fraction=0.75, min_pairs=8)
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
    assert reports[0]["kept"] == reports[1]["kept"] >= 9
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


def test_filtering_keeps_a_distance_quantile_and_ties_share_one_fate():
    d = np.array([0.0, 0.0, 0.0, 0.0, 5.0])
    assert keep_within_quantile(d, 0.8).tolist() == [0, 1, 2, 3]  # a strict d < quantile(0.8) = 1.0 also keeps 4
    assert keep_within_quantile(np.zeros(6), 0.5).tolist() == list(range(6))  # all tied: kept together
    tied = np.array([1.0, 2.0, 2.0, 2.0, 9.0])
    assert keep_within_quantile(tied, 0.4).tolist() == [0, 1, 2, 3]  # quantile 2.0: every tie kept, not one
    assert keep_within_quantile(tied[::-1], 0.4).tolist() == [1, 2, 3, 4]  # same samples, whatever the order
    with pytest.raises(ValueError, match="keep_fraction"):
        AdaptConfig(keep_fraction=1.5)


def test_sigma_in_metres_becomes_each_models_pixels():
    cfg = AdaptConfig()
    assert cfg.sigma_m == pytest.approx(0.566, abs=0.01)  # the paper's 4 px at VIGOR's 512 px
    assert sigma_px_for(cfg, 0.1416) == pytest.approx(4.0, abs=0.05)
    assert sigma_px_for(cfg, 1.0) == pytest.approx(0.566, abs=0.01)  # xcorr_drone_micro: 1 m/px


def _micro_teacher():
    torch.manual_seed(0)
    return create_model("ccvpe_drone_micro")


def test_too_few_usable_pairs_stop_before_training(tmp_path, monkeypatch):
    import edge_geoloc.train.adaptation as adaptation

    monkeypatch.setattr(adaptation, "train_student", lambda *a, **k: pytest.fail("trained on bad input"))
    teacher, cfg = _micro_teacher(), AdaptConfig(min_pairs=20)
    target = open_target(_target_set(tmp_path / "few", [30.0] * 12, [30.0] * 12), teacher, cfg)
    with pytest.raises(AdaptationInputError, match="only 12 usable pairs of 12.*min_pairs=20"):
        adapt(teacher, target, cfg)


def test_pairs_whose_patch_misses_their_coarse_fix_are_another_maps(tmp_path, monkeypatch):
    import edge_geoloc.train.adaptation as adaptation

    monkeypatch.setattr(adaptation, "train_student", lambda *a, **k: pytest.fail("trained on bad input"))
    teacher, cfg = _micro_teacher(), AdaptConfig(min_pairs=5)
    far = GEOREF.pixel_to_latlon(-500.0, -500.0)  # 500 m outside the patch
    target = open_target(_target_set(tmp_path / "far", [30.0] * 8, [30.0] * 8, coarse=far), teacher, cfg)
    with pytest.raises(AdaptationInputError, match="0 usable pairs of 8 \\(coarse_fix_outside_patch: 8\\)"):
        adapt(teacher, target, cfg)


def test_patches_of_another_ground_size_stop_a_scale_aligned_teacher(tmp_path, monkeypatch):
    import edge_geoloc.train.adaptation as adaptation

    monkeypatch.setattr(adaptation, "train_student", lambda *a, **k: pytest.fail("trained on bad input"))
    teacher, cfg = create_model("xcorr_drone_micro"), AdaptConfig(min_pairs=1)
    half_m = PatchGeoref(32631, (0.5, 0.0, 500000.0, 0.0, -0.5, 5760000.0), 64, 64)  # 32 m, not 64 m
    target = open_target(_target_set(tmp_path / "half", [30.0] * 4, [30.0] * 4, georef=half_m, size_m=32.0),
                         teacher, cfg)
    with pytest.raises(AdaptationInputError, match="cover 32.0 m but xcorr_drone_micro takes 64.0 m"):
        adapt(teacher, target, cfg)


def test_a_teacher_of_another_architecture_stops_before_training(tmp_path, monkeypatch):
    import edge_geoloc.train.adaptation as adaptation

    monkeypatch.setattr(adaptation, "train_student", lambda *a, **k: pytest.fail("trained on bad input"))
    root = _target_set(tmp_path / "t", [30.0] * 4, [30.0] * 4)
    cfg = AdaptConfig(min_pairs=1)
    opened_for_xcorr = open_target(root, create_model("xcorr_drone_micro"), cfg)
    with pytest.raises(AdaptationInputError, match="opened for another architecture"):
        adapt(_micro_teacher(), opened_for_xcorr, cfg)
    with pytest.raises(AdaptationInputError, match="not a heat-map localizer"):
        adapt(torch.nn.Linear(2, 2), opened_for_xcorr, cfg)
    with pytest.raises(AdaptationInputError, match="K'=3 supervises all 3 levels"):
        adapt(create_model("xcorr_drone_micro"), opened_for_xcorr, AdaptConfig(min_pairs=1, supervised_levels=3))


def test_panorama_roll_moves_the_orientation_label_with_the_image():
    query = torch.arange(16, dtype=torch.float32).reshape(1, 1, 16).expand(3, 2, 16).clone()

    class _Pano(torch.utils.data.Dataset):
        info = type("Info", (), {"query_kind": "ground_pano"})()

        def __len__(self):
            return 50

        def __getitem__(self, i):
            return {"query": query, "aerial": torch.zeros(3, 4, 4), "heading_rad": 0.0, "index": i}

    rolled = RolledPanoramas(_Pano(), 180.0, seed=1)
    shifts = set()
    for i in range(50):
        item = rolled[i]
        k = int(round(item["heading_rad"] / (2 * math.pi) * 16)) % 16  # heading 2 pi k / W ...
        assert torch.equal(item["query"], torch.roll(query, -k, dims=-1))  # ... <=> rolled left by k columns
        shifts.add(k)
        assert torch.equal(rolled[i]["query"], item["query"])  # a pure function of (seed, epoch, index)
    assert len(shifts) > 5
    rolled.set_epoch(1)
    assert any(not torch.equal(rolled[i]["query"], RolledPanoramas(_Pano(), 180.0, 1)[i]["query"]) for i in range(50))


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


def test_plain_self_distillation_max_pools_the_teachers_map_like_the_mode_labels():
    model = create_model("ccvpe_drone_micro", num_orientations=1)
    maps = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    labels = PseudoLabels(modes=np.zeros((2, 2)), heatmaps=maps)
    targets = pseudo_targets(model, labels, sigma_px=1.0)({"index": torch.tensor([0, 1]),
                                                           "heading_rad": torch.tensor([0.0, 0.0])})
    cell = 64 // model.level_sizes[0]
    assert targets.levels[0][1, 0, 0, 0] == pytest.approx(float(maps[1, :cell, :cell].max()))


def test_a_labelled_validation_set_chooses_the_final_students_epoch(tmp_path):
    teacher, cfg = _micro_teacher(), AdaptConfig(aux_epochs=1, student_epochs=3, batch_size=4, min_pairs=8, lr=1e-3)
    rows = np.random.default_rng(0).uniform(20, 44, (2, 12))
    target = open_target(_target_set(tmp_path / "t", *rows), teacher, cfg)
    from edge_geoloc.data.pairs import dataset_for_model
    from edge_geoloc.evaluate.localization_metrics import evaluate_dataset

    val = dataset_for_model(_target_set(tmp_path / "v", *rows), teacher, read_ground_truth=True)
    result = adapt(teacher, target, cfg, tmp_path / "out", validation=val)
    curve = [p["val_mean_m"] for p in result.report["student_curve"]]
    assert len(curve) == 3 and result.report["selected_epoch"] == int(np.argmin(curve)) + 1
    assert evaluate_dataset(result.selected, val)["mean_m"] == pytest.approx(min(curve))
    assert evaluate_dataset(result.student, val)["mean_m"] == pytest.approx(curve[-1])
    assert (tmp_path / "out" / "student_selected.safetensors").is_file()


def test_validation_every_half_epoch_chooses_among_half_epochs(tmp_path):
    teacher = _micro_teacher()
    cfg = AdaptConfig(aux_epochs=1, student_epochs=2, batch_size=4, min_pairs=8, lr=1e-3, validations_per_epoch=2)
    rows = np.random.default_rng(0).uniform(20, 44, (2, 12))
    target = open_target(_target_set(tmp_path / "t", *rows), teacher, cfg)
    from edge_geoloc.data.pairs import dataset_for_model
    from edge_geoloc.evaluate.localization_metrics import evaluate_dataset

    val = dataset_for_model(_target_set(tmp_path / "v", *rows), teacher, read_ground_truth=True)
    result = adapt(teacher, target, cfg, validation=val)
    curve = result.report["student_curve"]
    assert [p["epoch"] for p in curve] == [0.5, 1.0, 1.5, 2.0]
    best = int(np.argmin([p["val_mean_m"] for p in curve]))
    assert result.report["selected_epoch"] == curve[best]["epoch"]
    assert evaluate_dataset(result.selected, val)["mean_m"] == pytest.approx(curve[best]["val_mean_m"])
    assert evaluate_dataset(result.student, val)["mean_m"] == pytest.approx(curve[-1]["val_mean_m"])
    assert not math.isclose(curve[0]["val_mean_m"], curve[1]["val_mean_m"])  # it trained between the checks


def test_anchor_targets_are_the_teachers_own_finest_level_and_train_only_with_a_weight():
    torch.manual_seed(0)
    teacher = create_model("xcorr_drone_micro").eval()
    student = create_model("xcorr_drone_micro")
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():  # the student has moved away from the teacher
        student.features.proj[1].weight.add_(0.3 * torch.randn_like(student.features.proj[1].weight))
    batch = {"query": torch.randn(2, 3, 32, 32), "aerial": torch.randn(2, 3, 64, 64),
             "index": torch.tensor([0, 1]), "heading_rad": torch.zeros(2)}
    labels = PseudoLabels(np.array([[30.0, 30.0], [10.0, 50.0]]))
    finest_proj = student.features.proj[1].weight  # only the finest level (K'=2 of 3) reads it
    grads = {}
    for weight in (0.0, 1.0):
        cfg = AdaptConfig(anchor_weight=weight)
        loss_fn, targets_fn = student_objective(teacher, student, labels, cfg, sigma_px=1.0)
        targets = targets_fn(batch)
        if weight:
            finest = teacher(batch["query"], batch["aerial"]).levels[2]
            expected = torch.softmax(finest.flatten(1) / cfg.temperature, dim=1).reshape(finest.shape)
            assert torch.allclose(targets.levels[2], expected.detach())
        student.zero_grad()
        loss, parts = loss_fn(student(batch["query"], batch["aerial"]), targets)
        loss.backward()
        grads[weight] = None if finest_proj.grad is None else finest_proj.grad.abs().sum().item()
        assert ("anchor" in parts) == bool(weight)
    assert grads[0.0] in (None, 0.0) and grads[1.0] > 0


def test_adapt_config_refuses_a_negative_anchor_or_no_validation_point():
    with pytest.raises(ValueError, match="anchor_weight"):
        AdaptConfig(anchor_weight=-1.0)
    with pytest.raises(ValueError, match="validations_per_epoch"):
        AdaptConfig(validations_per_epoch=0)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core box two threads per process thrash (measured 75x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_adapt_cli_stops_on_too_few_pairs_with_one_line(tmp_path, capsys):
    from edge_geoloc.models.checkpoint import save_model
    from edge_geoloc.train.adapt_cli import main

    ckpt = save_model(_micro_teacher(), tmp_path / "teacher.safetensors")
    root = _target_set(tmp_path / "few", [30.0] * 6, [30.0] * 6)
    with pytest.raises(SystemExit) as stop:
        main(["--teacher", str(ckpt), "--target", str(root), "--out", str(tmp_path / "out"), "--threads", "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "only 6 usable pairs of 6" in err and "min_pairs=50" in err
    assert not (tmp_path / "out" / "student.safetensors").exists()


def test_benchmark_variants_never_share_a_cache_with_the_default_run(monkeypatch):
    import importlib.util
    import sys
    from dataclasses import replace
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptation.py"
    spec = importlib.util.spec_from_file_location("adaptation_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    default = bench.Variant()
    anchored = bench.Variant(replace(bench.ADAPT, anchor_weight=1.0, validations_per_epoch=2))
    winter = bench.Variant(flight="winter_flight")
    assert default.tag == ""  # the default run keeps its cache names
    assert len({default.tag, anchored.tag, winter.tag, bench.Variant(replace(bench.ADAPT, lr=3e-4)).tag}) == 4
    assert "anchor_weight1" in anchored.tag and winter.tag.endswith("_winter_flight")
