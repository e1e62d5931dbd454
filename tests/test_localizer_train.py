"""Trainer: checkpoints rebuild the model exactly, a rerun resumes, the CLI trains from a config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_geoloc.artifacts import read_checkpoint_meta
from edge_geoloc.config import from_dict
from edge_geoloc.data.pairs import PairDataset, PairWriter
from edge_geoloc.geo import PatchGeoref
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, fit

GEOREF = PatchGeoref(32631, (1.0, 0.0, 500000.0, 0.0, -1.0, 5760000.0), 64, 64)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _pairs(root, n=8):
    rng = np.random.default_rng(5)
    with PairWriter(root, "drone", 64.0, 64) as w:
        for i in range(n):
            w.add(f"{i:03d}", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                  rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), GEOREF, 52.0, 4.36, heading_rad=0.5,
                  gt_row=float(rng.uniform(20, 44)), gt_col=float(rng.uniform(20, 44)))
    return root


def _cfg(tmp_path, epochs):
    return from_dict(LocalizerTrainConfig, {"model": {"name": "ccvpe_drone_micro"}, "out_dir": str(tmp_path / "run"),
                                            "optim": {"epochs": epochs}, "data": {"batch_size": 4}, "log_every": 0})


def test_checkpoint_round_trip_and_resume(tmp_path, caplog):
    root = _pairs(tmp_path / "pairs")
    ds = PairDataset(root, (64, 64), 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), read_ground_truth=True)
    model = fit(_cfg(tmp_path, 1), ds, ds)
    loaded, _ = load_model(tmp_path / "run" / "last.safetensors", expected_kind="localizer")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    meta = read_checkpoint_meta(tmp_path / "run" / "best.safetensors")
    assert meta.kind == "localizer" and meta.preprocessing["query"]["alignment"] == "north_up"
    assert "val_mean_m" in meta.extra["metrics"]
    caplog.set_level("INFO")
    fit(_cfg(tmp_path, 2), ds)
    assert "resumed from" in caplog.text and "at epoch 1" in caplog.text


def test_train_cli_runs_from_a_config(tmp_path):
    from edge_geoloc.train.localizer_cli import main

    root = _pairs(tmp_path / "pairs", n=4)
    out = tmp_path / "cli_run"
    code = main(["--config", "configs/localizer_synthetic.yaml", f"data.train={root}", f"data.val={root}",
                 f"out_dir={out}", "optim.epochs=1", "data.batch_size=4", "log_every=0", "--threads", "1"])
    assert code == 0 and (out / "best.safetensors").is_file() and (out / "config.yaml").is_file()
