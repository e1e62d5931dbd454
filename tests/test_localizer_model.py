"""Localizer contract tests: shapes, heat map is a distribution, vectorised matching == CCVPE's loop, ONNX."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_geoloc.models import create_model, list_models
from edge_geoloc.models.localizer import LocalizerExportWrapper
from edge_geoloc.models.localizer_blocks import OrientationMatcher
from edge_geoloc.train.losses_localizer import (
    LocalizerLoss,
    WeightedInfoNCE,
    gaussian_heatmap,
    heatmap_cross_entropy,
    make_targets,
    orientation_bin_weights,
)

TINY = dict(query_size=(64, 64), aerial_size=64, coarse_grid=4, level_channels=(8, 4, 2, 1), final_channels=8,
            orientation_channels=8)


def test_localizers_are_registered():
    assert {"ccvpe_drone_tiny", "ccvpe_drone_small", "ccvpe_vigor_b0", "ccvpe_kitti_b0"} <= set(
        list_models("localizer"))


@pytest.mark.parametrize("kwargs", [dict(num_orientations=1), dict(num_orientations=4)])
def test_forward_shapes_distribution_and_backward(kwargs):
    model = create_model("ccvpe_drone_tiny", **TINY, **kwargs)
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    o = kwargs["num_orientations"]
    assert out.heatmap.shape == (2, 64, 64)
    assert [tuple(v.shape) for v in out.levels] == [(2, o, n, n) for n in (4, 8, 16, 32)]
    assert out.orientation.shape == (2, 2, 64, 64)
    assert torch.allclose(out.heatmap.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)
    assert torch.allclose(out.orientation.norm(dim=1), torch.ones(2, 64, 64), atol=1e-4)
    assert all(float(v.detach().abs().max()) <= 1.0 + 1e-5 for v in out.levels)  # cosine similarities
    targets = make_targets(torch.tensor([[10.0, 20.0], [40.0, 5.0]]), torch.tensor([0.3, 2.0]), (64, 64),
                           model.level_sizes, o, sigma_px=2.0)
    loss, _ = LocalizerLoss()(out, targets)
    loss.backward()
    # every head and the query backbone learn (the aerial backbone's stages past the coarse grid are unused)
    missing = [n for n, p in model.named_parameters() if not n.startswith("aerial_backbone")
               and (p.grad is None or float(p.grad.abs().sum()) == 0.0)]
    assert missing == []


def test_panorama_model_with_circular_padding_runs():
    model = create_model("ccvpe_vigor_b0", backbone="mobilenetv3_small_050", query_size=(64, 128), aerial_size=64,
                         num_orientations=4, coarse_grid=4, level_channels=(8, 4, 2, 1), final_channels=8,
                         orientation_channels=8)
    out = model(torch.randn(1, 3, 64, 128), torch.randn(1, 3, 64, 64))
    assert out.levels[0].shape == (1, 4, 4, 4)


def test_vectorised_matching_equals_ccvpe_roll_loop():
    torch.manual_seed(1)
    o, c, length = 5, 3, 15
    matcher = OrientationMatcher(query_len=length, aerial_ch=o * c, num_orientations=o)
    q, a = torch.randn(2, length), torch.randn(2, o * c, 4, 4)
    fast = matcher(q, a)
    for i in range(o):  # CCVPE: roll the aerial descriptor by -i*c, keep the first L channels, cosine
        rolled = torch.roll(a, shifts=-i * c, dims=1)[:, :length]
        slow = F.cosine_similarity(rolled, q[:, :, None, None].expand_as(rolled), dim=1)
        assert torch.allclose(fast[:, i], slow, atol=1e-5)


def test_orientation_bins_interpolate_linearly():
    w = orientation_bin_weights(torch.tensor([0.0, math.pi / 2 * 1.25, 2 * math.pi - 0.1]), 4, 3)
    assert w[0].tolist() == pytest.approx([1, 0, 0, 0])
    assert w[1].tolist() == pytest.approx([0, 0.75, 0.25, 0])
    assert w[2, 0] + w[2, 3] == pytest.approx(1.0) and w[2, 0] > 0.9


def test_infonce_matches_hand_computed_value_and_prefers_the_right_cell():
    scores = torch.tensor([[[[0.9, 0.1], [0.0, -0.5]]]])  # (1, 1, 2, 2)
    labels = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    logp = torch.log_softmax(scores.flatten() / 0.1, 0)
    expected = -(1.0 * logp[0] + 0.5 * logp[1]) / 1.5
    assert float(WeightedInfoNCE()(scores, labels)) == pytest.approx(float(expected))
    better = WeightedInfoNCE()(torch.tensor([[[[0.9, 0.8], [0.0, -0.5]]]]), labels)
    assert float(better) < float(expected)


def test_cross_entropy_is_minimal_at_the_label():
    gt = gaussian_heatmap(torch.tensor([[8.0, 8.0]]), (16, 16), 2.0)
    right = gt / gt.sum()
    wrong = torch.roll(right, 5, dims=2)
    assert float(heatmap_cross_entropy(right, gt)) < float(heatmap_cross_entropy(wrong, gt))


def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = create_model("ccvpe_drone_tiny", **TINY, num_orientations=4).eval()
    wrapper = LocalizerExportWrapper(model)
    q, a = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = wrapper(q, a)
    path = tmp_path / "loc.onnx"
    torch.onnx.export(wrapper, (q, a), str(path), input_names=["query", "aerial"],
                      output_names=wrapper.output_names, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"query": q.numpy(), "aerial": a.numpy()})
    assert [o.name for o in session.get_outputs()] == ["heatmap", "orientation", "level_0", "level_1", "level_2",
                                                       "level_3"]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-3)


def test_bad_geometry_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="aerial_size"):
        create_model("ccvpe_drone_tiny", **{**TINY, "level_channels": (8, 4, 2)})
    with pytest.raises(ValueError, match="query_kind"):
        create_model("ccvpe_drone_tiny", query_kind="satellite")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core box two threads per process thrash."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
