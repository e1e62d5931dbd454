"""The backend interface: ONNX Runtime vs PyTorch reference, preprocessing from the sidecar, bad inputs."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from edge_geoloc.export.config import ExportConfig
from edge_geoloc.export.onnx_export import export_model
from edge_geoloc.export.sidecar import InputPreprocessing, sidecar_path
from export_tiny_models import TinyLocalizer, TinyRetrieval

from edge_geoloc.artifacts import ArtifactError, CheckpointMeta, save_checkpoint
from edge_geoloc.models import registry
from edge_geoloc.runtime.backends import BackendInputError, LatencyRecorder, load_backend, preprocess_image
from edge_geoloc.runtime.backends.torch_backend import TorchBackend

FAST = ExportConfig(simplify=False, check_tensorrt=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny retrieval model and localizer exported once: {name: (model, onnx path)}."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("backends")
    models = {"retrieval": TinyRetrieval(), "localizer": TinyLocalizer()}
    return {k: (m, export_model(m, root / f"{k}.onnx", FAST).onnx_path) for k, m in models.items()}


def _copy(onnx_path, tmp_path):
    shutil.copy(onnx_path, tmp_path / onnx_path.name)
    shutil.copy(sidecar_path(onnx_path), tmp_path / sidecar_path(onnx_path).name)
    return tmp_path / onnx_path.name


@pytest.mark.parametrize("kind", ["retrieval", "localizer"])
def test_onnxruntime_matches_torch_reference_on_preprocessed_images(exported, kind):
    model, path = exported[kind]
    ort_backend = load_backend(path)
    ref = TorchBackend.from_model(model)
    assert ort_backend.name == "onnxruntime" and ort_backend.kind == kind
    assert ort_backend.input_names == ref.input_names and ort_backend.output_names == ref.output_names
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    feeds = {name: ort_backend.preprocess(name, image) for name in ort_backend.input_names}
    out, expected = ort_backend.run(feeds), ref.run(feeds)
    for name in expected:
        np.testing.assert_allclose(out[name], expected[name], atol=1e-4, rtol=1e-3)


def test_warmup_resets_latency_and_stats_count_calls(exported):
    backend = load_backend(exported["retrieval"][1])
    backend.warmup(2)
    assert backend.latency_stats()["n"] == 0
    feeds = {"image": np.zeros((1, 3, 32, 32), np.float32)}
    for _ in range(4):
        backend.run(feeds)
    stats = backend.latency_stats()
    assert stats["n"] == 4 and 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["max_ms"]


def test_latency_recorder_golden_values():
    rec = LatencyRecorder()
    for seconds in (0.001, 0.002, 0.003, 0.004):
        rec.add(seconds)
    stats = rec.stats()
    assert stats["n"] == 4
    assert stats["mean_ms"] == pytest.approx(2.5) and stats["p50_ms"] == pytest.approx(2.5)
    assert stats["max_ms"] == pytest.approx(4.0) and stats["p90_ms"] == pytest.approx(3.7)


def test_preprocess_normalises_resizes_and_orders_colours():
    prep = InputPreprocessing(size_hw=(4, 6), mean=(0.2, 0.4, 0.6), std=(0.5, 0.5, 0.5))
    image = np.zeros((8, 12, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 51, 102, 255  # 0.2, 0.4, 1.0 after scaling
    x = preprocess_image(image, prep)
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [0.0, 0.0, 0.8], atol=1e-6)
    bgr = preprocess_image(image, InputPreprocessing(size_hw=(8, 12), mean=(0, 0, 0), std=(1, 1, 1),
                                                     color_order="BGR"))
    np.testing.assert_allclose(bgr[0, :, 3, 3], [1.0, 0.4, 0.2], atol=1e-6)


@pytest.mark.parametrize("bad_image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                       np.zeros((8, 8, 4), np.uint8)])
def test_preprocess_rejects_non_rgb_uint8(exported, bad_image):
    backend = load_backend(exported["retrieval"][1])
    with pytest.raises(BackendInputError, match=r"\(H, W, 3\) uint8"):
        backend.preprocess("image", bad_image)


@pytest.mark.parametrize(("feeds", "message"), [
    ({"image": np.zeros((1, 3, 16, 16), np.float32)}, r"shape \[1, 3, 16, 16\].*expects \[1, 3, 32, 32\]"),
    ({"image": np.zeros((2, 3, 32, 32), np.float32)}, "static batch"),
    ({"image": np.zeros((1, 3, 32, 32), np.float64)}, r"dtype float64.*astype\(np.float32\)"),
    ({"img": np.zeros((1, 3, 32, 32), np.float32)}, r"missing \['image'\], unknown \['img'\]"),
    ({"image": [[0.0]]}, "must be a numpy array"),
])
def test_run_rejects_bad_inputs_with_a_fix(exported, feeds, message):
    backend = load_backend(exported["retrieval"][1])
    with pytest.raises(BackendInputError, match=message):
        backend.run(feeds)


def test_localizer_inputs_must_share_batch(tmp_path):
    path = export_model(TinyLocalizer(), tmp_path / "l.onnx",
                        ExportConfig(simplify=False, check_tensorrt=False, dynamic_batch=True)).onnx_path
    backend = load_backend(path)
    ok = backend.run({"query": np.zeros((3, 3, 32, 32), np.float32), "aerial": np.zeros((3, 3, 32, 32), np.float32)})
    assert ok["heatmap"].shape == (3, 32, 32)
    with pytest.raises(BackendInputError, match="same batch size"):
        backend.run({"query": np.zeros((1, 3, 32, 32), np.float32), "aerial": np.zeros((2, 3, 32, 32), np.float32)})


def test_missing_sidecar_is_a_clear_error(exported, tmp_path):
    path = _copy(exported["retrieval"][1], tmp_path)
    sidecar_path(path).unlink()
    with pytest.raises(ArtifactError, match=r"missing sidecar retrieval.json.*edge-geoloc export"):
        load_backend(path)


def test_sidecar_hash_mismatch_is_a_clear_error(exported, tmp_path):
    path = _copy(exported["retrieval"][1], tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        load_backend(path)


def test_corrupted_onnx_with_matching_hash_is_a_clear_error(exported, tmp_path):
    from edge_geoloc.artifacts import sha256_file

    path = _copy(exported["retrieval"][1], tmp_path)
    path.write_bytes(path.read_bytes()[:200])  # truncated, and the sidecar updated to match
    side = json.loads(sidecar_path(path).read_text())
    side["sha256"]["artifact"] = sha256_file(path)
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        load_backend(path)


def test_garbage_sidecar_is_a_clear_error(exported, tmp_path):
    path = _copy(exported["retrieval"][1], tmp_path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        load_backend(path)


def test_device_auto_resolves_and_bad_devices_are_rejected(exported):
    backend = load_backend(exported["retrieval"][1], device="auto")
    assert backend.run({"image": np.zeros((1, 3, 32, 32), np.float32)})["embedding"].shape == (1, 16)
    with pytest.raises(ValueError, match="device must be"):
        load_backend(exported["retrieval"][1], device="gpu0")


def test_available_backends_lists_what_is_installed():
    from edge_geoloc.runtime.backends import available_backends

    found = available_backends()
    assert "onnxruntime" in found and "torch" in found
    assert ("tensorrt" in found) == all(importlib.util.find_spec(m) for m in ("tensorrt", "pycuda"))


def test_load_backend_rejects_unknown_files_and_kinds(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the backend"):
        load_backend(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="kind must be one of"):
        load_backend(tmp_path / "model.onnx", kind="tflite")


def test_tensorrt_kind_without_tensorrt_says_what_to_install(exported):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="kind='onnxruntime'"):
        load_backend(exported["retrieval"][1], kind="tensorrt")


def test_checkpoint_loads_as_torch_reference_with_same_answers(exported, tmp_path, monkeypatch):
    model, onnx_path = exported["retrieval"]
    monkeypatch.setitem(registry._REGISTRY, "tiny_retrieval_test",
                        registry.ModelEntry("tiny_retrieval_test", "retrieval", lambda: TinyRetrieval(), "test"))
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model.state_dict(),
                           CheckpointMeta("retrieval", "tiny_retrieval_test", {}))
    torch_backend = load_backend(ckpt)
    assert torch_backend.name == "torch" and torch_backend.sidecar["sha256"]["checkpoint"]
    feeds = {"image": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    ort_out = load_backend(onnx_path).run({"image": feeds["image"][:1]})
    np.testing.assert_allclose(torch_backend.run(feeds)["embedding"][:1], ort_out["embedding"], atol=1e-5)


class _OverlapProbe:
    """Wraps a backend's ``_run``: the first call blocks until released; records calls running at once."""

    def __init__(self, backend):
        import threading

        self.inner, self.inside, self.most = backend._run, 0, 0
        self.first_entered, self.release, self.calls = threading.Event(), threading.Event(), 0
        self.second_entered = threading.Event()
        backend._run = self

    def __call__(self, feeds):
        self.inside += 1
        self.most, self.calls = max(self.most, self.inside), self.calls + 1
        if self.calls == 1:
            self.first_entered.set()
            self.release.wait(30)
        else:
            self.second_entered.set()
        try:
            return self.inner(feeds)
        finally:
            self.inside -= 1


def test_run_is_serialised_across_threads_and_close_is_final(exported, tmp_path):
    import threading

    from edge_geoloc.runtime.backends import BackendClosedError

    backend = load_backend(_copy(exported["retrieval"][1], tmp_path))
    probe = _OverlapProbe(backend)
    feeds = {"image": np.zeros(backend.inputs[0].concrete_shape(1), np.float32)}
    threads = [threading.Thread(target=backend.run, args=(feeds,)) for _ in range(3)]
    threads[0].start()
    assert probe.first_entered.wait(30)
    for t in threads[1:]:
        t.start()
    assert not probe.second_entered.wait(0.5)  # held at the lock while the first call runs (unlocked: enters)
    probe.release.set()
    for t in threads:
        t.join(30)
    assert probe.calls == 3 and probe.most == 1  # never two calls inside the model at once
    backend.close()
    assert backend.closed and not hasattr(backend, "session")
    with pytest.raises(BackendClosedError, match="closed; load the model again"):
        backend.run(feeds)
