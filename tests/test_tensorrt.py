"""TensorRT paths: build plans (10 vs 11), profiles, manifests and mismatch errors, caches, calibration batching.

Everything here but the last test is pure logic and runs without TensorRT; the real-engine test runs only
where ``tensorrt`` (and a GPU) is importable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edge_geoloc.export import engine_cli
from edge_geoloc.export.calibration import CalibrationError, CalibrationStream, batch_feeds
from edge_geoloc.export.config import EngineConfig, ExportConfig, ParityConfig, QuantizeConfig
from edge_geoloc.export.manifest import (
    DeviceInfo,
    EngineMismatchError,
    build_engine_manifest,
    check_engine_manifest,
    engine_cache_key,
    engine_mismatches,
    jetpack_from_l4t,
    parse_l4t_release,
    read_engine_manifest,
)
from edge_geoloc.export.onnx_export import export_model
from edge_geoloc.export.sidecar import read_sidecar, write_sidecar
from edge_geoloc.export.tensorrt_build import (
    EngineBuildError,
    calibration_batch,
    calibration_cache_path,
    engine_path_for,
    input_profiles,
    onnx_has_qdq,
    plan_build,
    reusable_engine,
    timing_cache_for,
)
from export_tiny_models import TinyLocalizer, TinyRetrieval

from edge_geoloc.artifacts import ArtifactError

ORIN = DeviceInfo("10.3.0", "Orin", "8.7", "36.4.3", "6.1/6.2", "12.6")
FAST = ExportConfig(simplify=False, check_tensorrt=False)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    static = export_model(TinyRetrieval(), root / "r.onnx", FAST).onnx_path
    dynamic = export_model(TinyLocalizer(), root / "l.onnx",
                           ExportConfig(simplify=False, check_tensorrt=False, dynamic_batch=True)).onnx_path
    return static, dynamic


def test_tensorrt_10_uses_builder_flags_and_a_calibrator():
    assert plan_build("10.3.0", EngineConfig(precision="fp16"), False).builder_flags == ("FP16",)
    plan = plan_build("10.3.0", EngineConfig(precision="int8", calibration_dir=Path("frames")), False)
    assert plan.builder_flags == ("INT8",) and plan.use_calibrator and not plan.strongly_typed
    with pytest.raises(EngineBuildError, match="needs calibration frames"):
        plan_build("10.3.0", EngineConfig(precision="int8"), False)
    qdq = plan_build("10.3.0", EngineConfig(precision="int8"), True)
    assert not qdq.strongly_typed and not qdq.use_calibrator and qdq.builder_flags == ("INT8", "FP16")
    typed = plan_build("10.3.0", EngineConfig(precision="int8", strongly_typed_qdq=True), True)
    assert typed.strongly_typed and typed.builder_flags == () and "stay fp32" in typed.notes[0]


def test_fp32_builds_clear_tf32_unless_allowed():
    """TensorRT turns TF32 on by default; an fp32 engine with TF32 misses ORT parity at 1e-4 on Orin."""
    assert plan_build("10.3.0", EngineConfig(precision="fp32"), False).cleared_flags == ("TF32",)
    assert plan_build("11.4", EngineConfig(precision="fp32"), False).cleared_flags == ("TF32",)
    assert plan_build("10.3.0", EngineConfig(precision="fp32", allow_tf32=True), False).cleared_flags == ()
    assert plan_build("10.3.0", EngineConfig(precision="fp16"), False).cleared_flags == ()


def test_calibration_batch_is_the_profiles_opt_batch_and_timing_caches_are_keyed():
    profiles = {"query": ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8)), "aerial": ((1, 3, 16, 16), (4, 3, 16, 16),
                                                                               (8, 3, 16, 16))}
    assert calibration_batch(profiles) == 4
    with pytest.raises(EngineBuildError, match="disagree on the opt batch"):
        calibration_batch({**profiles, "aerial": ((1, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))})
    base = Path("/models/timing.cache")
    assert timing_cache_for(base, "10.3.0", "8.7") == Path("/models/timing.trt10.3.0.sm8.7.cache")
    assert timing_cache_for(base, "10.3.0", "8.7") != timing_cache_for(base, "10.7.0", "8.7")
    assert timing_cache_for(base, "10.3.0", "8.7") != timing_cache_for(base, "10.3.0", "7.2")


def test_tensorrt_11_is_strongly_typed_and_needs_qdq_for_int8():
    plan = plan_build("11.4.0.106", EngineConfig(precision="int8"), True)
    assert plan.strongly_typed and plan.builder_flags == () and not plan.use_calibrator
    with pytest.raises(EngineBuildError, match="export quantize MODEL.onnx --target tensorrt"):
        plan_build("11.4.0", EngineConfig(precision="int8", calibration_dir=Path("frames")), False)
    assert any("fp16 tensors" in n for n in plan_build("11.0", EngineConfig(precision="fp16"), False).notes)
    with pytest.raises(EngineBuildError, match="too old"):
        plan_build("8.6.2", EngineConfig(), False)


def test_optional_flags_follow_the_config():
    flags = plan_build("10.7", EngineConfig(precision="best", version_compatible=True, dla_core=0,
                                            calibration_dir=Path("c")), False).builder_flags
    assert flags == ("VERSION_COMPATIBLE", "GPU_FALLBACK", "FP16", "INT8")


def test_profiles_from_sidecar(onnx_files):
    static, dynamic = onnx_files
    assert input_profiles(read_sidecar(static), EngineConfig()) == {"image": ((1, 3, 32, 32),) * 3}
    profiles = input_profiles(read_sidecar(dynamic), EngineConfig(max_batch=8, opt_batch=4))
    assert profiles["query"] == ((1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))
    with pytest.raises(EngineBuildError, match="re-export with `edge-geoloc export --dynamic-batch`"):
        input_profiles(read_sidecar(static), EngineConfig(max_batch=4))
    with pytest.raises(ValueError, match="opt_batch <= max_batch"):
        EngineConfig(max_batch=2, opt_batch=4)


def test_l4t_and_jetpack_parsing():
    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan 8\n"
    assert parse_l4t_release(text) == "36.4.3" and jetpack_from_l4t("36.4.3") == "6.1/6.2"
    assert parse_l4t_release("garbage") is None and jetpack_from_l4t(None) is None


def _manifest(onnx: Path, device: DeviceInfo = ORIN, precision: str = "fp16", **build) -> dict:
    side = read_sidecar(onnx)
    profiles = input_profiles(side, EngineConfig())
    build = {"rebuild_command": f"edge-geoloc build-engine {onnx.name} --precision {precision} --force", **build}
    return build_engine_manifest(side, device, precision=precision, onnx_sha256=side["sha256"]["artifact"],
                                 profiles=profiles, build=build)


def test_manifest_records_device_and_interface(onnx_files):
    manifest = _manifest(onnx_files[0])
    eng = manifest["engine"]
    assert (eng["tensorrt_version"], eng["compute_capability"], eng["jetpack_version"]) == ("10.3.0", "8.7", "6.1/6.2")
    assert manifest["precision"] == "fp16" and manifest["inputs"] == read_sidecar(onnx_files[0])["inputs"]
    assert manifest["preprocessing"] == read_sidecar(onnx_files[0])["preprocessing"]
    assert "parity" not in manifest and manifest["sha256"]["onnx"] == read_sidecar(onnx_files[0])["sha256"]["artifact"]


def test_mismatched_engine_fails_with_rebuild_command(onnx_files):
    manifest = _manifest(onnx_files[0])
    assert engine_mismatches(manifest, ORIN) == []
    xavier = DeviceInfo("10.3.0", "Xavier", "7.2", "36.4.3", "6.1/6.2")
    with pytest.raises(EngineMismatchError, match=r"compute capability 8.7 \(Orin\).*7.2 \(Xavier\).*"
                                                  r"build-engine r.onnx --precision fp16 --force"):
        check_engine_manifest(manifest, xavier, engine="r.fp16.engine")
    newer = DeviceInfo("10.7.0", "Orin", "8.7", "36.4.3")
    assert engine_mismatches(manifest, newer) == ["TensorRT 10.3.0 at build time, 10.7.0 here"]
    compatible = _manifest(onnx_files[0], version_compatible=True)
    assert engine_mismatches(compatible, newer) == []  # version-compatible: newer runtime, same major
    assert engine_mismatches(compatible, DeviceInfo("10.1.0", "Orin", "8.7", "36.4.3")) != []
    changed = engine_mismatches(manifest, ORIN, onnx_sha256="0" * 64)
    assert changed == ["the ONNX file changed since the engine was built"]


def test_cache_key_changes_with_every_input_that_matters():
    profiles = {"image": ((1, 3, 32, 32),) * 3}
    base = engine_cache_key("a" * 64, ORIN, "fp16", profiles)
    assert base == engine_cache_key("a" * 64, ORIN, "fp16", profiles)
    variants = [engine_cache_key("b" * 64, ORIN, "fp16", profiles),
                engine_cache_key("a" * 64, DeviceInfo("10.3.1", "Orin", "8.7", "36.4.3"), "fp16", profiles),
                engine_cache_key("a" * 64, ORIN, "int8", profiles),
                engine_cache_key("a" * 64, ORIN, "fp16", {"image": ((1, 3, 64, 64),) * 3}),
                engine_cache_key("a" * 64, ORIN, "fp16", profiles, calibration_id="files:3:abc")]
    assert len({base, *variants}) == 6


def test_engine_reuse_and_force(onnx_files, tmp_path):
    onnx = onnx_files[0]
    engine = tmp_path / engine_path_for(onnx, "fp16").name
    engine.write_bytes(b"plan bytes")
    sha = read_sidecar(onnx)["sha256"]["artifact"]
    assert not reusable_engine(engine, sha, ORIN, "fp16", force=False)  # no manifest yet
    write_sidecar(engine, _manifest(onnx))
    assert read_engine_manifest(engine)["engine"]["gpu_name"] == "Orin"
    assert reusable_engine(engine, sha, ORIN, "fp16", force=False)
    assert not reusable_engine(engine, sha, ORIN, "fp16", force=True)
    assert not reusable_engine(engine, sha, ORIN, "int8", force=False)
    assert not reusable_engine(engine, sha, DeviceInfo("10.7.0", "Orin", "8.7"), "fp16", force=False)
    engine.write_bytes(b"other plan")  # edited engine: the manifest's hash no longer matches
    assert not reusable_engine(engine, sha, ORIN, "fp16", force=False)
    with pytest.raises(ArtifactError, match="no 'engine' section"):
        read_engine_manifest(onnx)


def test_calibration_cache_path_depends_on_onnx_set_and_version(onnx_files):
    onnx = onnx_files[0]
    a = calibration_cache_path(onnx, "files:3:abc", "10.3.0")
    assert a.parent == onnx.parent and a.suffix == ".calib"
    assert a == calibration_cache_path(onnx, "files:3:abc", "10.3.0")
    assert a != calibration_cache_path(onnx, "files:4:abd", "10.3.0")
    assert a != calibration_cache_path(onnx, "files:3:abc", "10.7.0")


def test_calibration_batching_drops_short_tail_and_serves_in_name_order():
    feeds = [{"query": np.full((1, 3, 2, 2), i, np.float32), "aerial": np.full((1, 3, 4, 4), -i, np.float32)}
             for i in range(7)]
    batches = batch_feeds(feeds, 3)
    assert len(batches) == 2 and batches[1]["query"][:, 0, 0, 0].tolist() == [3, 4, 5]
    assert len(batch_feeds(feeds, 3, drop_last=False)) == 3
    with pytest.raises(CalibrationError, match="fewer than one batch"):
        batch_feeds(feeds[:2], 3)
    stream = CalibrationStream(batches)
    first = stream.next_batch(["aerial", "query"])
    assert stream.batch_size == 3 and first[0].shape == (3, 3, 4, 4) and first[1][2, 0, 0, 0] == 2
    assert stream.next_batch(["query", "aerial"]) is not None and stream.next_batch(["query"]) is None
    assert stream.served == 2
    with pytest.raises(CalibrationError, match="asked for"):
        CalibrationStream(batches).next_batch(["image"])


def test_qdq_detection_and_dry_run_cli(onnx_files, tmp_path, capsys):
    from edge_geoloc.export.calibration import calibration_feeds
    from edge_geoloc.export.quantize import quantize_onnx

    static, dynamic = onnx_files
    assert not onnx_has_qdq(static)
    assert engine_cli.main([str(dynamic), "--dry-run", "--max-batch", "4", "--trt-version", "10.3"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["builder_flags"] == ["FP16"] and plan["profiles"]["aerial"][2] == [4, 3, 32, 32]
    feeds, _ = calibration_feeds(read_sidecar(static), "synthetic", 4)
    qdq_cfg = QuantizeConfig(target="tensorrt", parity=ParityConfig(check_elements=False, real_samples=3,
                                                                    min_task_agreement=0.0))
    qdq, _ = quantize_onnx(static, feeds, qdq_cfg, out_path=tmp_path / "r.int8.onnx")
    assert onnx_has_qdq(qdq)
    assert engine_cli.main([str(qdq), "--dry-run", "--precision", "int8", "--trt-version", "11.4"]) == 0
    assert json.loads(capsys.readouterr().out)["strongly_typed"] is True
    assert engine_cli.main([str(static), "--dry-run", "--precision", "int8", "--trt-version", "11.4"]) == 1
    assert "removed implicit INT8 calibration" in capsys.readouterr().err


def test_build_without_tensorrt_explains_where_it_runs(onnx_files, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    assert engine_cli.main([str(onnx_files[0])]) == 2
    assert "python3-libnvinfer" in capsys.readouterr().err


@pytest.mark.tensorrt
def test_real_engine_matches_onnxruntime(onnx_files, tmp_path):
    pytest.importorskip("tensorrt")
    pytest.importorskip("pycuda")
    from edge_geoloc.export.tensorrt_build import build_engine

    from edge_geoloc.runtime.backends import load_backend

    onnx = onnx_files[1]
    engine = build_engine(onnx, EngineConfig(precision="fp32", max_batch=2, timing_cache=tmp_path / "t.cache"),
                          tmp_path / "l.fp32.engine")
    assert len(list(tmp_path.glob("t.trt*.sm*.cache"))) == 1  # keyed by TensorRT version and GPU
    trt_backend, ort_backend = load_backend(engine, device="cuda"), load_backend(onnx)
    feeds = {n: np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
             for n in ("query", "aerial")}
    np.testing.assert_allclose(trt_backend.run(feeds)["heatmap"], ort_backend.run(feeds)["heatmap"], atol=1e-4)
    assert build_engine(onnx, EngineConfig(precision="fp32", max_batch=2), engine) == engine  # reused
