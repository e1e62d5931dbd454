"""Contract tests over every registered retrieval model, and an ONNX round trip of the exported branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_geoloc.artifacts import CheckpointMeta, load_checkpoint, save_checkpoint
from edge_geoloc.models import create_model, list_models
from edge_geoloc.models.pooling import GeM

SMALL = {"cspdh_convnext_base": 32, "cspdh_convnext_tiny": 32}  # big ones: tiny input keeps the test cheap


@pytest.mark.parametrize("name", list_models("retrieval"))
def test_contract_forward_shapes_features_and_backward(name: str) -> None:
    size = SMALL.get(name, 64)
    model = create_model(name, img_size=size, embed_dim=32)
    assert model.input_size == (size, size) and model.embed_dim == 32 and model.shared_weights
    assert len(model.mean) == len(model.std) == 3
    x = torch.randn(2, 3, size, size)
    out = model.forward_stages(x, "satellite")
    assert out.embedding.shape == (2, 32)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(2), atol=1e-5)
    assert [f.shape[1] for f in out.feature_maps] == model.stage_channels  # heads sized from feature_info
    assert len(out.stage_embeddings) == len(model.stage_channels) - 1
    (out.embedding.sum() + sum(e.sum() for e in out.stage_embeddings)).backward()
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    grads = [p.grad for p in model.parameters() if p.requires_grad and p is not model.logit_scale]
    assert all(g is not None for g in grads)
    assert torch.equal(model(x), model.encode(x, "drone"))


def test_separate_weights_give_view_specific_encoders() -> None:
    model = create_model("cspdh_mobilenetv3_small", img_size=64, shared_weights=False).eval()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(model.encode(x, "drone"), model.encode(x, "satellite"))
    with pytest.raises(ValueError, match="view must be one of"):
        model.encode(x, "street")
    with pytest.raises(KeyError, match="did you mean"):
        create_model("cspdh_convnext_atoo")


def test_gem_interpolates_between_mean_and_max() -> None:
    x = torch.rand(1, 2, 4, 4) + 0.1
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(2, 3)), atol=1e-6)
    assert torch.all(GeM(p=8.0)(x) > x.mean(dim=(2, 3)))
    assert torch.all(GeM(p=8.0)(x) <= x.amax(dim=(2, 3)) + 1e-6)


def test_checkpoint_round_trip_rebuilds_the_same_encoder(tmp_path) -> None:
    model = create_model("cspdh_convnext_atto", img_size=64, embed_dim=16).eval()
    meta = CheckpointMeta("retrieval", model.model_name, model.model_kwargs, preprocessing=model.preprocessing())
    path = save_checkpoint(tmp_path / "m.safetensors", model.state_dict(), meta)
    state, meta2 = load_checkpoint(path, expected_kind="retrieval")
    rebuilt = create_model(meta2.model_name, **meta2.model_kwargs).eval()
    rebuilt.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), rebuilt(x))


class _Branch(nn.Module):
    def __init__(self, model: nn.Module, view: str) -> None:
        super().__init__()
        self.model, self.view = model, view

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image, self.view)


@pytest.mark.parametrize("view", ["drone", "satellite"])
def test_onnx_round_trip_of_the_embedding_branch(tmp_path, view: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = create_model("cspdh_convnext_atto", img_size=64, embed_dim=32).eval()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "m.onnx"
    torch.onnx.export(_Branch(model, view), (x,), str(path), input_names=["image"], output_names=["embedding"],
                      opset_version=17, dynamo=False, dynamic_axes={"image": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["embedding"]  # only the embedding path is exported, no stage heads
    got = session.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, model.encode(x, view).detach().numpy(), atol=1e-4)
