"""Cross-correlation drone localizer: contract (shapes, distribution, backward, ONNX at batch 1) and the
normalised cross-correlation against a hand-made template."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_geoloc.models import create_model, list_models
from edge_geoloc.models.localizer import LocalizerExportWrapper
from edge_geoloc.models.localizer_xcorr import normalized_xcorr
from edge_geoloc.train.losses_localizer import LocalizerLoss, LocalizerLossConfig, make_targets


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_xcorr_models_are_registered_and_record_the_query_ground_size():
    assert {"xcorr_drone_micro", "xcorr_drone_tiny"} <= set(list_models("localizer"))
    micro, tiny = create_model("xcorr_drone_micro"), create_model("xcorr_drone_tiny")
    assert micro.query_ground_size_m == 32.0 and micro.aerial_m_per_px == 1.0
    assert tiny.query_ground_size_m == 32.0 and tiny.aerial_m_per_px == 0.5


@pytest.mark.parametrize("k", [3, 4])
def test_normalized_xcorr_peaks_at_the_template_centre_cell(k):
    torch.manual_seed(0)
    aerial = torch.randn(2, 5, 16, 16)
    template = torch.stack([aerial[0, :, 3:3 + k, 9:9 + k], aerial[1, :, 8:8 + k, 2:2 + k]])
    score = normalized_xcorr(aerial, template)  # (2, 1, 16, 16)
    assert score.shape == (2, 1, 16, 16) and float(score.abs().max()) <= 1.0 + 1e-5
    peaks = np.array([divmod(int(score[i, 0].argmax()), 16) for i in range(2)]) + 0.5  # cell centres
    centres = np.array([(3, 9), (8, 2)]) + k / 2  # the template's centre (a cell corner for an even k)
    assert np.abs(peaks - centres).max() <= 0.5


def test_xcorr_forward_distribution_and_backward():
    model = create_model("xcorr_drone_micro")
    out = model(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64))
    assert out.heatmap.shape == (2, 64, 64) and out.orientation.shape == (2, 2, 64, 64)
    assert [tuple(v.shape) for v in out.levels] == [(2, 1, n, n) for n in (8, 16, 32)] == [
        (2, 1, n, n) for n in model.level_sizes]
    assert torch.allclose(out.heatmap.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)
    targets = make_targets(torch.tensor([[30.0, 20.0], [40.0, 35.0]]), torch.zeros(2), (64, 64), model.level_sizes,
                           1, sigma_px=1.0)
    loss, _ = LocalizerLoss(LocalizerLossConfig(sigma_px=1.0, infonce_weight=1.0))(out, targets)
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0.0] == []


def test_bad_xcorr_geometry_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="power of two"):
        create_model("xcorr_drone_micro", coarse_grid=3)
    with pytest.raises(ValueError, match="ground views"):
        create_model("xcorr_drone_micro", query_kind="ground_pano")


def test_xcorr_onnx_export_at_batch_one_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    wrapper = LocalizerExportWrapper(create_model("xcorr_drone_micro").eval())
    q, a = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = wrapper(q, a)
    path = tmp_path / "xcorr.onnx"
    torch.onnx.export(wrapper, (q, a), str(path), input_names=["query", "aerial"],
                      output_names=wrapper.output_names, opset_version=17, dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"query": q.numpy(),
                                                                                      "aerial": a.numpy()})
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-3)
