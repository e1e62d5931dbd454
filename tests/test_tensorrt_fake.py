"""The TensorRT build and run plumbing against in-memory stand-ins for ``tensorrt`` and ``pycuda``.

The stand-ins record the API calls and move bytes between "host" and "device" dicts; the fake engine's
output is a known function of its input. This checks our side of the contract (flags, profiles, timing
cache, manifest, reuse, buffer binding, copies, batch changes, mismatch errors) where TensorRT cannot be
installed. It does not prove TensorRT behaves as modelled: ``test_tensorrt.py``'s real-engine test does.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from edge_geoloc.export.config import EngineConfig, ExportConfig
from edge_geoloc.export.manifest import EngineMismatchError
from edge_geoloc.export.onnx_export import export_model
from edge_geoloc.export.sidecar import read_sidecar, sidecar_path
from edge_geoloc.export.tensorrt_build import build_engine
from export_tiny_models import TinyRetrieval

from edge_geoloc.runtime.backends import load_backend

DEVICE_MEMORY: dict[int, np.ndarray] = {}
CALLS: list[tuple] = []


class _Ptr(int):
    def free(self):
        DEVICE_MEMORY.pop(self)
        CALLS.append(("free", int(self)))


def _fake_pycuda(cc=(8, 7)) -> types.ModuleType:
    driver = types.ModuleType("pycuda.driver")
    context = types.SimpleNamespace(push=lambda: CALLS.append(("push",)), pop=lambda: CALLS.append(("pop",)),
                                    detach=lambda: CALLS.append(("detach",)))
    driver.init = lambda: None
    driver.Device = lambda i: types.SimpleNamespace(compute_capability=lambda: cc, name=lambda: "Fake Orin",
                                                   retain_primary_context=lambda: context)
    driver.get_version = lambda: (12, 6, 0)
    driver.Stream = lambda: types.SimpleNamespace(handle=7, synchronize=lambda: CALLS.append(("sync",)))
    driver.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)

    def mem_alloc(nbytes):
        ptr = _Ptr(1000 + len(DEVICE_MEMORY))
        DEVICE_MEMORY[ptr] = np.zeros(nbytes // 4, np.float32)
        return ptr

    def htod(ptr, host, stream=None):
        DEVICE_MEMORY[ptr][:] = host.ravel()
        CALLS.append(("htod", int(ptr)))

    def dtoh(host, ptr, stream=None):
        host.ravel()[:] = DEVICE_MEMORY[ptr]
        CALLS.append(("dtoh", int(ptr)))

    driver.mem_alloc, driver.memcpy_htod_async, driver.memcpy_dtoh_async = mem_alloc, htod, dtoh
    driver.memcpy_htod = htod
    return driver


class _Context:
    """Input ``image (B, 3, H, W)`` -> ``embedding (B, 16)`` = per-sample mean, repeated; or, for an engine of dynamic
    height and width (a matcher), ``features (B, 2, H/4, W/4)`` = the channel mean averaged over 4 x 4 cells."""

    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        b, _, h, w = shape
        self.shapes[name] = tuple(shape)
        self.shapes[self.engine.output] = (b, 16) if self.engine.output == "embedding" else (b, 2, h // 4, w // 4)

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle):
        CALLS.append(("execute", stream_handle))
        out = self.engine.output
        x = DEVICE_MEMORY[self.addresses["image"]].reshape(self.shapes["image"])
        DEVICE_MEMORY[self.addresses[out]][:] = fake_engine_output(x, out).ravel()
        return True


def fake_engine_output(x: np.ndarray, output: str) -> np.ndarray:
    b, _, h, w = x.shape
    if output == "embedding":
        return np.repeat(x.mean(axis=(1, 2, 3)), 16).reshape(b, 16)
    cells = x.mean(axis=1).reshape(b, h // 4, 4, w // 4, 4).mean(axis=(2, 4))
    return np.repeat(cells[:, None], 2, axis=1)


class _Engine:
    """Deserialised from the fake plan: the optimisation profile the build was given."""

    num_io_tensors = 2

    def __init__(self, profile):
        self.profile = [tuple(s) for s in profile]
        self.output = "features" if self.profile[0][2:] != self.profile[2][2:] else "embedding"

    def get_tensor_name(self, i):
        return ["image", self.output][i]

    def get_tensor_dtype(self, name):
        return "float"

    def get_tensor_profile_shape(self, name, profile):
        return self.profile

    def create_execution_context(self):
        return _Context(self)


def _fake_tensorrt(version="10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.nptype = lambda dtype: np.float32
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", VERSION_COMPATIBLE="VC", GPU_FALLBACK="GF",
                                            TF32="TF32")
    trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (), {"__init__": lambda self: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.DeviceType = types.SimpleNamespace(DLA="dla")
    trt.Runtime = lambda logger: types.SimpleNamespace(
        deserialize_cuda_engine=lambda data: _Engine(json.loads(data)["image"]))
    trt.Builder = _Builder
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(
        parse_from_file=lambda path: CALLS.append(("parse", path)) or True, num_errors=0)
    return trt


class _Config:
    """TF32 is on by default, as in TensorRT; a timing cache made on another device is refused."""

    def __init__(self):
        self.flags, self.cache, self.profile, self.calibration_profile = ["TF32"], None, None, None
        self.int8_calibrator = None

    def set_memory_pool_limit(self, pool, size):
        CALLS.append(("workspace", size))

    def set_flag(self, flag):
        self.flags.append(flag)

    def clear_flag(self, flag):
        self.flags.remove(flag)

    def add_optimization_profile(self, profile):
        self.profile = profile
        CALLS.append(("profile", dict(profile.shapes)))

    def set_calibration_profile(self, profile):
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, data):
        if bytes(data).startswith(b"garbage"):
            return None
        return types.SimpleNamespace(data=bytes(data), serialize=lambda: bytes(data) + b"+tuned")

    def set_timing_cache(self, cache, ignore_mismatch):
        if b"other-gpu" in cache.data:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class _Builder:
    def __init__(self, logger):
        self.config = _Config()

    def create_network(self, flags):
        return types.SimpleNamespace(flags=flags)

    def create_builder_config(self):
        return self.config

    def create_optimization_profile(self):
        profile = types.SimpleNamespace(shapes={})
        profile.set_shape = lambda name, low, opt, high: profile.shapes.update({name: (low, opt, high)})
        return profile

    def build_serialized_network(self, network, config):
        CALLS.append(("build", tuple(f for f in config.flags if f != "TF32") + (("TF32",) if "TF32" in config.flags
                                                                               else ())))
        if config.int8_calibrator is not None:
            _calibrate(config.int8_calibrator, config.calibration_profile)
        return json.dumps(config.profile.shapes).encode()  # the "plan": the fake runtime reads the profile back


CALIBRATION_SEEN: list[dict] = []


def _calibrate(calibrator, profile):
    """What TensorRT 10 does with an explicit-batch network: one opt-shaped tensor per get_batch call."""
    assert profile is not None, "dynamic shapes need a calibration profile"
    opt = profile.shapes["image"][1]
    while (pointers := calibrator.get_batch(["image"])) is not None:
        buffer = DEVICE_MEMORY[pointers[0]]
        read = buffer[: int(np.prod(opt))].reshape(opt)
        CALIBRATION_SEEN.append({"means": read.mean(axis=(1, 2, 3)).tolist(), "unread": buffer.size - read.size})


@pytest.fixture
def fake_trt(monkeypatch):
    DEVICE_MEMORY.clear()
    CALLS.clear()
    CALIBRATION_SEEN.clear()
    driver = _fake_pycuda()
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    return sys.modules


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake") / "r.onnx"
    return export_model(TinyRetrieval(), path, ExportConfig(simplify=False, check_tensorrt=False,
                                                            dynamic_batch=True)).onnx_path


def test_build_sets_flags_profiles_timing_cache_and_manifest(fake_trt, dynamic_onnx, tmp_path):
    cache = tmp_path / "timing.cache"
    cfg = EngineConfig(precision="fp16", max_batch=4, opt_batch=2, workspace_mb=64, timing_cache=cache)
    engine = build_engine(dynamic_onnx, cfg, tmp_path / "r.fp16.engine")
    assert ("workspace", 64 << 20) in CALLS and ("build", ("FP16", "TF32")) in CALLS  # TF32 left on for fp16
    profile = next(c[1] for c in CALLS if c[0] == "profile")
    assert profile["image"] == ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))
    keyed = tmp_path / "timing.trt10.3.0.sm8.7.cache"  # per TensorRT version and compute capability
    assert keyed.read_bytes() == b"+tuned" and not cache.exists()
    manifest = read_sidecar(engine)
    assert manifest["engine"]["gpu_name"] == "Fake Orin" and manifest["engine"]["compute_capability"] == "8.7"
    assert manifest["sha256"]["onnx"] == read_sidecar(dynamic_onnx)["sha256"]["artifact"]
    assert "--max-batch 4" in manifest["engine"]["rebuild_command"]
    CALLS.clear()
    assert build_engine(dynamic_onnx, cfg, engine) == engine and not CALLS  # reused, nothing rebuilt
    build_engine(dynamic_onnx, EngineConfig(precision="fp16", max_batch=4, timing_cache=cache, force=True), engine)
    assert ("build", ("FP16", "TF32")) in CALLS and keyed.read_bytes() == b"+tuned+tuned"  # cache carried over


def test_engine_backend_binds_copies_and_reallocates(fake_trt, dynamic_onnx, tmp_path):
    engine = build_engine(dynamic_onnx, EngineConfig(precision="fp16", max_batch=4), tmp_path / "r.fp16.engine")
    backend = load_backend(engine, device="cuda")
    assert backend.name == "tensorrt" and backend.output_names == ["embedding"]
    x = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    CALLS.clear()
    out = backend.run({"image": x})["embedding"]
    np.testing.assert_allclose(out, np.repeat(x.mean(axis=(1, 2, 3)), 16).reshape(2, 16), rtol=1e-6)
    kinds = [c[0] for c in CALLS]
    # batch 2 replaces the batch-1 buffers (freed first); synchronised after the device -> host copy
    assert kinds == ["push", "free", "free", "htod", "execute", "dtoh", "sync", "pop"]
    assert backend.run({"image": x[:1]})["embedding"].shape == (1, 16) and backend.latency_stats()["n"] == 2
    with pytest.raises(ValueError, match="outside the engine's profile.*--max-batch 5"):
        backend.run({"image": np.zeros((5, 3, 32, 32), np.float32)})


def test_engine_from_another_gpu_is_refused_with_rebuild_command(fake_trt, dynamic_onnx, tmp_path, monkeypatch):
    engine = build_engine(dynamic_onnx, EngineConfig(precision="fp16"), tmp_path / "r.fp16.engine")
    monkeypatch.setitem(sys.modules, "pycuda.driver", _fake_pycuda(cc=(7, 2)))
    sys.modules["pycuda"].driver = sys.modules["pycuda.driver"]
    with pytest.raises(EngineMismatchError, match=r"8.7 \(Fake Orin\).*7.2.*build-engine r.onnx --precision fp16"):
        load_backend(engine, device="cuda")
    assert sidecar_path(engine).is_file()


def _calibration_folder(folder, count):
    """``count`` 32x32 images of distinct flat grey levels: each image is recognisable by its mean."""
    import cv2

    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), np.full((32, 32, 3), 10 + 20 * i, np.uint8))
    return folder


@pytest.mark.parametrize("opt_batch", [1, 2])
def test_int8_calibration_feeds_every_image_in_opt_batch_tensors(fake_trt, dynamic_onnx, tmp_path, opt_batch):
    """TensorRT reads one opt-shaped tensor per batch: batches must hold exactly opt_batch images."""
    frames = _calibration_folder(tmp_path / "frames", 6)
    cfg = EngineConfig(precision="int8", max_batch=4, opt_batch=opt_batch, calibration_dir=frames)
    build_engine(dynamic_onnx, cfg, tmp_path / "r.int8.engine")
    consumed = [m for batch in CALIBRATION_SEEN for m in batch["means"]]
    assert len(CALIBRATION_SEEN) == 6 // opt_batch and len(set(np.round(consumed, 4))) == 6  # all 6, once each
    assert all(batch["unread"] == 0 for batch in CALIBRATION_SEEN)  # nothing copied that TensorRT never reads
    assert not DEVICE_MEMORY and CALLS.count(("push",)) == CALLS.count(("pop",)) == 1  # freed, primary context
    assert CALLS.index(("push",)) < CALLS.index(next(c for c in CALLS if c[0] == "build")) < CALLS.index(("pop",))


def test_fp32_build_clears_tf32(fake_trt, dynamic_onnx, tmp_path):
    build_engine(dynamic_onnx, EngineConfig(precision="fp32"), tmp_path / "r.fp32.engine")
    assert ("build", ()) in CALLS  # TF32 (on by default) was cleared
    build_engine(dynamic_onnx, EngineConfig(precision="fp32", allow_tf32=True, force=True), tmp_path / "r.fp32.engine")
    assert ("build", ("TF32",)) in CALLS


@pytest.mark.parametrize("stale", [b"garbage", b"other-gpu tactics"])
def test_a_refused_timing_cache_is_replaced_not_silently_ignored(fake_trt, dynamic_onnx, tmp_path, stale, caplog):
    keyed = tmp_path / "timing.trt10.3.0.sm8.7.cache"
    keyed.write_bytes(stale)
    build_engine(dynamic_onnx, EngineConfig(precision="fp16", timing_cache=tmp_path / "timing.cache"),
                 tmp_path / "r.fp16.engine")
    assert keyed.read_bytes() == b"+tuned"  # a new cache, from an empty one
    assert "refused by TensorRT 10.3.0" in caplog.text


def test_close_frees_device_memory_and_releases_the_context(fake_trt, dynamic_onnx, tmp_path):
    from edge_geoloc.runtime.backends import BackendClosedError

    engine = build_engine(dynamic_onnx, EngineConfig(precision="fp16", max_batch=4), tmp_path / "r.fp16.engine")
    backend = load_backend(engine, device="cuda")
    backend.run({"image": np.zeros((2, 3, 32, 32), np.float32)})  # reallocates for batch 2: old buffers freed
    assert len(DEVICE_MEMORY) == 2
    CALLS.clear()
    with backend:
        pass
    assert not DEVICE_MEMORY and [c[0] for c in CALLS] == ["push", "free", "free", "pop", "detach"]
    backend.close()  # twice is fine
    with pytest.raises(BackendClosedError, match="closed"):
        backend.run({"image": np.zeros((1, 3, 32, 32), np.float32)})


@pytest.fixture(scope="module")
def matcher_onnx(tmp_path_factory):
    from edge_geoloc.export.config import ParityConfig

    from edge_geoloc.models import create_model

    model = create_model("map_matcher_micro", channels=[4, 8, 8])
    gate = ExportConfig(simplify=False, check_tensorrt=False, parity=ParityConfig(random_samples=1, real_samples=3))
    return export_model(model, tmp_path_factory.mktemp("fake_matcher") / "m.onnx", gate).onnx_path


def test_matcher_engine_profile_spans_frame_to_map_blocks(fake_trt, matcher_onnx, tmp_path):
    from edge_geoloc.export.tensorrt_build import EngineBuildError

    engine = build_engine(matcher_onnx, EngineConfig(precision="fp16"), tmp_path / "m.fp16.engine")
    profile = next(c[1] for c in CALLS if c[0] == "profile")
    assert profile["image"] == ((1, 3, 32, 32), (1, 3, 80, 80), (1, 3, 1024, 1024))  # opt: the sidecar's frame
    assert read_sidecar(engine)["engine"]["profiles"]["image"] == [[1, 3, 32, 32], [1, 3, 80, 80], [1, 3, 1024, 1024]]
    cfg = EngineConfig(precision="fp16", min_hw=(64, 64), opt_hw=(256, 192), max_hw=(2048, 1536), force=True)
    manifest = read_sidecar(build_engine(matcher_onnx, cfg, engine))
    assert manifest["engine"]["profiles"]["image"][2] == [1, 3, 2048, 1536]
    assert "--min-hw 64,64 --opt-hw 256,192 --max-hw 2048,1536" in manifest["engine"]["rebuild_command"]
    with pytest.raises(EngineBuildError, match="multiples of 4"):
        build_engine(matcher_onnx, EngineConfig(precision="fp16", max_hw=(1022, 1024), force=True), engine)
    with pytest.raises(EngineBuildError, match="min_hw <= opt_hw <= max_hw"):
        build_engine(matcher_onnx, EngineConfig(precision="fp16", opt_hw=(2048, 80), force=True), engine)


def test_matcher_engine_rebinds_for_each_size_inside_its_profile(fake_trt, matcher_onnx, tmp_path):
    from edge_geoloc.runtime.backends.base import normalise_image
    from edge_geoloc.runtime.learned_matcher import BackendFeatures

    engine = build_engine(matcher_onnx, EngineConfig(precision="fp16", max_hw=(512, 512)), tmp_path / "m.engine")
    features = BackendFeatures(load_backend(engine, device="cuda"))
    assert features.max_hw == (512, 512)
    rng = np.random.default_rng(0)
    # loaded bound to the frame size; a new size frees and rebinds the buffers, the same size reuses them
    for hw, rebinds in (((80, 80), False), ((256, 192), True), ((256, 192), False), ((80, 80), True)):
        image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        CALLS.clear()
        out = features(image)
        expected = fake_engine_output(normalise_image(image, features.prep), "features")[0]
        assert out.shape == (2, hw[0] // 4, hw[1] // 4)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
        assert [c[0] for c in CALLS][:3] == (["push", "free", "free"] if rebinds else ["push", "htod", "execute"])
    tall = rng.integers(0, 256, (1200, 64, 3), dtype=np.uint8)  # beyond the 512 px profile: blocks of 512 x 64
    CALLS.clear()
    np.testing.assert_allclose(features(tall), fake_engine_output(normalise_image(tall, features.prep),
                                                                  "features")[0], rtol=1e-5, atol=1e-6)
    assert [c[0] for c in CALLS].count("execute") == 3 and features.backend._shapes["image"] == (1, 3, 512, 64)
    features.margin_px = None  # as for a sidecar without a measured receptive field
    with pytest.raises(ValueError, match=r"exceeds the engine's profile \(512 x 512\).*--max-hw 1200,64"):
        features(tall)
    with pytest.raises(ValueError, match="outside the engine's profile.*--min-hw"):
        features.backend.run({"image": np.zeros((1, 3, 16, 16), np.float32)})


def test_int8_calibration_at_another_size_than_the_opt_shape_is_refused(fake_trt, matcher_onnx, tmp_path):
    from edge_geoloc.export.tensorrt_build import EngineBuildError

    frames = _calibration_folder(tmp_path / "frames", 4)
    with pytest.raises(EngineBuildError, match="opt shape is \\(1, 3, 256, 192\\)"):
        build_engine(matcher_onnx, EngineConfig(precision="int8", opt_hw=(256, 192), calibration_dir=frames),
                     tmp_path / "m.int8.engine")
    build_engine(matcher_onnx, EngineConfig(precision="int8", calibration_dir=frames), tmp_path / "m.int8.engine")
    assert len(CALIBRATION_SEEN) == 4 and all(batch["unread"] == 0 for batch in CALIBRATION_SEEN)
