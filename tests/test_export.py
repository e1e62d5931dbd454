"""PyTorch -> ONNX export: sidecar contents, parity gate (passes and fails loudly), options, CLI, int8 QDQ."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from edge_geoloc.export import cli
from edge_geoloc.export.calibration import CalibrationError, calibration_feeds
from edge_geoloc.export.config import ExportConfig, ParityConfig, QuantizeConfig
from edge_geoloc.export.onnx_export import export_model, state_dict_sha256
from edge_geoloc.export.parity import ParityError, argmax_agreement, element_errors, top1_agreement
from edge_geoloc.export.quantize import quantize_onnx
from edge_geoloc.export.sidecar import read_sidecar, sidecar_path
from edge_geoloc.export.trt_check import audit_onnx
from export_tiny_models import TinyLocalizer, TinyRetrieval

from edge_geoloc.artifacts import CheckpointMeta, save_checkpoint, sha256_file
from edge_geoloc.models import registry
from edge_geoloc.runtime.backends import load_backend

FAST = ExportConfig(simplify=False, check_tensorrt=False)


class TracedConstant(TinyRetrieval):
    """Reads a pixel as a Python float: tracing bakes the example's value in, so ONNX != PyTorch."""

    def encode(self, images: torch.Tensor, view: str = "drone") -> torch.Tensor:
        shift = float(images[0, 0, 0, 0])
        return F.normalize(super().encode(images, view) + shift, dim=1)


def test_sidecar_records_everything_the_runtime_needs(tmp_path):
    model = TinyRetrieval()
    result = export_model(model, tmp_path / "r.onnx", ExportConfig())
    side = json.loads(sidecar_path(result.onnx_path).read_text())
    assert side["kind"] == "retrieval" and side["opset"] == 17 and side["precision"] == "fp32"
    assert side["inputs"] == [{"name": "image", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert side["outputs"] == [{"name": "embedding", "shape": [1, 16], "dtype": "float32"}]
    prep = side["preprocessing"]["image"]
    assert prep["size_hw"] == [32, 32] and prep["mean"] == [0.5, 0.5, 0.5] and prep["color_order"] == "RGB"
    assert side["sha256"]["artifact"] == sha256_file(result.onnx_path)
    assert side["sha256"]["weights"] == state_dict_sha256(model)
    assert {"torch", "onnx", "onnxruntime"} <= set(side["versions"])
    assert side["parity"]["passed"] and side["tensorrt_audit"]["ok"]
    assert side["export"]["simplifier"] in ("onnxslim", "onnxsim", None)
    graph = onnx.load(str(result.onnx_path))
    assert {p.key: p.value for p in graph.metadata_props}["edge_geoloc.kind"] == "retrieval"


def test_parity_gate_fails_loudly_and_writes_nothing(tmp_path):
    target = tmp_path / "bad.onnx"
    with pytest.raises(ParityError, match="failed the parity gate: embedding") as info:
        export_model(TracedConstant(), target, FAST)
    assert not info.value.report["passed"]
    assert not target.exists() and not sidecar_path(target).exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone too


def test_localizer_options_dynamic_batch_and_finest_only(tmp_path):
    full = export_model(TinyLocalizer(), tmp_path / "full.onnx", FAST).sidecar
    assert [o["name"] for o in full["outputs"]] == ["heatmap", "orientation", "level_0", "level_1"]
    cfg = ExportConfig(simplify=False, check_tensorrt=False, dynamic_batch=True, finest_only=True)
    result = export_model(TinyLocalizer(), tmp_path / "fine.onnx", cfg)
    assert [o["name"] for o in result.sidecar["outputs"]] == ["heatmap", "orientation"]
    assert result.sidecar["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    assert result.sidecar["parity"]["samples"] == 2 + 1 + 6  # random, one batch-2 random, synthetic
    out = load_backend(result.onnx_path).run({n: np.zeros((4, 3, 32, 32), np.float32) for n in ("query", "aerial")})
    np.testing.assert_allclose(out["heatmap"].sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_view_option_exports_the_satellite_branch(tmp_path):
    model = TinyRetrieval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sat = export_model(model, tmp_path / "sat.onnx", ExportConfig(simplify=False, check_tensorrt=False,
                                                                   view="satellite")).onnx_path
    expected = model.encode(torch.from_numpy(x), view="satellite").detach().numpy()
    np.testing.assert_allclose(load_backend(sat).run({"image": x})["embedding"], expected, atol=1e-5)


def test_opset_below_17_is_rejected():
    with pytest.raises(ValueError, match="opset must be 17 or newer"):
        ExportConfig(opset=13)


def test_element_errors_follow_polygraphy_rule():
    ref = np.array([1.0, 100.0, 0.0])
    err = element_errors(ref, ref + np.array([0.0, 0.05, 0.0]), atol=1e-4, rtol=1e-3)
    assert err["failing"] == 0 and err["max_abs"] == pytest.approx(0.05)  # 0.05 <= 1e-3 * 100 (relative)
    err = element_errors(ref, ref + np.array([0.0, 0.0, 0.5]), atol=1e-3, rtol=1e-3)
    assert err["failing"] == 1  # 0.5 > atol * max(1, 100) = 0.1 and > rtol * 0


def _unit(degrees):
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_top1_agreement_counts_flips_but_excuses_numerical_ties():
    ref = _unit([0, 20, -20.001, 90])  # query 0: neighbour 1 wins by a hair over neighbour 2
    assert top1_agreement(ref, ref)["agreement"] == 1.0
    jitter = _unit([0, 20, -19.999, 90])  # a tiny numerical change flips that near tie
    tie = top1_agreement(ref, jitter)
    assert tie["raw_agreement"] == 0.75 and tie["agreement"] == 1.0
    assert top1_agreement(ref, jitter, excuse_ties=False)["agreement"] == 0.75
    flipped = top1_agreement(ref, _unit([0, 40, -10, 90]), excuse_ties=False)  # a real change of neighbour
    assert flipped["agreement"] < 1.0
    assert top1_agreement(ref, _unit([0, 40, -10, 90]), top_k=2, excuse_ties=False)["agreement"] == 1.0


def test_argmax_agreement_radius_and_ties():
    ref = np.zeros((2, 8, 8))
    ref[0, 2, 2] = ref[1, 5, 5] = 1.0
    moved = np.zeros_like(ref)
    moved[0, 2, 3] = moved[1, 0, 0] = 1.0
    strict = argmax_agreement(ref, moved, radius_px=1.0, excuse_ties=False)
    assert strict["agreement"] == 0.5 and strict["max_peak_distance_px"] == pytest.approx(np.hypot(5, 5))


def test_export_cli_from_checkpoint_and_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry._REGISTRY, "tiny_loc_test",
                        registry.ModelEntry("tiny_loc_test", "localizer", lambda: TinyLocalizer(), "test"))
    ckpt = save_checkpoint(tmp_path / "loc.safetensors", TinyLocalizer().state_dict(),
                           CheckpointMeta("localizer", "tiny_loc_test", {}, preprocessing={
                               "query": {"interpolation": "area", "alignment": "north_up"},
                               "aerial": {"interpolation": "bilinear"}}))  # the localizer trainer's layout
    out = tmp_path / "models" / "loc.onnx"
    assert cli.main(["--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out), "--no-simplify",
                     "--finest-only", "--set", "parity.real_samples=3"]) == 0
    side = read_sidecar(out)
    assert side["sha256"]["checkpoint"] == sha256_file(ckpt)
    assert side["preprocessing"]["query"]["interpolation"] == "area"  # from the checkpoint's metadata
    assert side["preprocessing"]["query"]["alignment"] == "north_up"
    assert side["preprocessing"]["aerial"]["interpolation"] == "bilinear"
    assert side["export"]["parity"]["real_samples"] == 3
    assert cli.main(["check", str(out)]) == 0
    assert "OK: every operator" in capsys.readouterr().out
    assert cli.main(["--checkpoint", str(ckpt), "--set", "opset=11"]) == 2
    assert "opset must be 17" in capsys.readouterr().err


def test_int8_qdq_for_tensorrt_is_symmetric_and_gated(tmp_path):
    fp32 = export_model(TinyRetrieval(), tmp_path / "r.onnx", FAST).onnx_path
    feeds, source = calibration_feeds(read_sidecar(fp32), "synthetic", 8)
    cfg = QuantizeConfig(target="tensorrt", parity=ParityConfig(check_elements=False, real_samples=6,
                                                                min_task_agreement=0.5, top_k=3, excuse_ties=False))
    path, side = quantize_onnx(fp32, feeds, cfg, calibration_id=source)
    assert path.name == "r.int8.onnx" and side["precision"] == "int8-qdq"
    assert side["quantization"]["calibration_frames"] == 8 and side["parity"]["passed"]
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert audit_onnx(path).ok  # zero points are all 0: what TensorRT's Q/DQ import needs
    asymmetric, _ = quantize_onnx(fp32, feeds, QuantizeConfig(target="onnxruntime", parity=cfg.parity),
                                  out_path=tmp_path / "r.ort.int8.onnx")
    offenders = audit_onnx(asymmetric).offenders
    assert offenders and all("zero point" in o.what for o in offenders)


def test_calibration_folder_errors_say_what_to_pass(tmp_path):
    import cv2

    side = read_sidecar(export_model(TinyLocalizer(), tmp_path / "l.onnx", FAST).onnx_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(CalibrationError, match="not a pairs dataset"):
        calibration_feeds(side, frames, 4)
    retrieval_side = read_sidecar(export_model(TinyRetrieval(), tmp_path / "r.onnx", FAST).onnx_path)
    with pytest.raises(CalibrationError, match="no images"):
        calibration_feeds(retrieval_side, frames, 4)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((40, 50, 3), 60 * i, np.uint8))
    (frames / "broken.jpg").write_bytes(b"not a jpeg")
    feeds, source = calibration_feeds(retrieval_side, frames, 10)
    assert len(feeds) == 3 and feeds[0]["image"].shape == (1, 3, 32, 32) and source.startswith("files:4:")


def test_quantize_cli_writes_gated_int8_and_rejects_bad_calibration(tmp_path, capsys):
    fp32 = export_model(TinyRetrieval(), tmp_path / "r.onnx", FAST).onnx_path
    assert cli.main(["quantize", str(fp32), "--calib", "synthetic", "--images", "8", "--target", "tensorrt"]) == 0
    assert "tensorrt int8 QDQ" in capsys.readouterr().out
    assert read_sidecar(tmp_path / "r.int8.onnx")["quantization"]["target"] == "tensorrt"
    assert cli.main(["quantize", str(fp32), "--calib", str(tmp_path / "nowhere")]) == 2
    assert "calibration folder not found" in capsys.readouterr().err
