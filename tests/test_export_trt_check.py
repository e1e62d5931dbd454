"""Static TensorRT audit (`edge-geoloc export check`): offenders are named, clean graphs pass, bad files error."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from edge_geoloc.export import cli
from edge_geoloc.export.trt_check import audit_model, audit_onnx
from onnx import TensorProto, helper, numpy_helper

from edge_geoloc.artifacts import ArtifactError


def _model(nodes, inputs, outputs, initializers=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets)


def _x(name="x", dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, [1, 4])


def test_clean_graph_passes():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_x()], [_x("y")])
    report = audit_model(model)
    assert report.ok and report.op_counts == {"Relu": 1} and "OK" in report.format()


def test_offenders_are_listed_with_node_names_and_fixes():
    nodes = [helper.make_node("Unique", ["x"], ["u"], name="uniq"),
             helper.make_node("FusedConv", ["x"], ["f"], name="ort_fused", domain="com.microsoft"),
             helper.make_node("Resize", ["x", "", "scales"], ["r"], name="cubic", mode="cubic"),
             helper.make_node("Identity", ["s"], ["s_out"], name="strings")]
    scales = numpy_helper.from_array(np.ones(2, np.float32), "scales")
    model = _model(nodes, [_x(), _x("s", TensorProto.STRING)],
                   [_x("u"), _x("f"), _x("r"), _x("s_out", TensorProto.STRING)], [scales],
                   extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    report = audit_model(model, "bad.onnx")
    text = report.format()
    assert not report.ok
    assert "uniq: Unique - operator not supported" in text
    assert "ort_fused: com.microsoft::FusedConv" in text
    assert "cubic: Resize(mode=cubic)" in text
    assert "s: STRING - element type TensorRT does not support" in text


def test_nonzero_zero_point_and_old_opset_are_offenders():
    q = helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="q_asym")
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "zp")]
    report = audit_model(_model([q], [_x()], [_x("q", TensorProto.UINT8)], inits, opset=13))
    assert any("zero point" in o.what and o.where == "q_asym" for o in report.offenders)
    old = audit_model(_model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_x("y")], opset=7))
    assert any("opset 7" in o.what for o in old.offenders)


def test_double_is_a_warning_not_an_offender():
    cast = helper.make_node("Cast", ["x"], ["y"], name="to_double", to=TensorProto.DOUBLE)
    report = audit_model(_model([cast], [_x()], [_x("y", TensorProto.DOUBLE)]))
    assert report.ok and any("DOUBLE" in w for w in report.warnings)


def test_check_cli_exit_codes_and_corrupt_files(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    onnx.save(_model([helper.make_node("Unique", ["x"], ["u"], name="uniq")], [_x()], [_x("u")]), str(bad))
    assert cli.main(["check", str(bad)]) == 1
    assert "1 offender(s)" in capsys.readouterr().out
    assert cli.main(["check", str(bad), "--json"]) == 1
    assert '"ok": false' in capsys.readouterr().out
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not a protobuf\xff\xff")
    with pytest.raises(ArtifactError, match="not a valid ONNX file"):
        audit_onnx(corrupt)
    assert cli.main(["check", str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


def test_opset_and_operators_are_checked_against_the_targeted_tensorrt():
    """JetPack 6 ships TensorRT 10.3: its parser stops at opset 20 and lacks operators added later."""
    relu = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    opset_21 = _model(relu, [_x()], [_x("y")], opset=21)
    offenders = audit_model(opset_21, tensorrt="10.3.0").offenders
    assert [o.what for o in offenders] == ["opset 21"] and "parses opsets 9..20" in offenders[0].why
    assert audit_model(opset_21, tensorrt="10.15").ok and audit_model(_model(relu, [_x()], [_x("y")], opset=20)).ok
    stft = _model([helper.make_node("STFT", ["x", "step"], ["y"], name="stft")], [_x(), _x("step")], [_x("y")])
    old = audit_model(stft, tensorrt="10.3")
    assert [str(o) for o in old.offenders] == [
        "stft: STFT - operator added in TensorRT 10.5; the target 10.3 cannot parse it (decompose it, or target a "
        "newer TensorRT)"]
    assert audit_model(stft, tensorrt="10.5").ok
    with pytest.raises(ValueError, match="cannot read a TensorRT version"):
        audit_model(stft, tensorrt="jetpack")


def test_check_cli_takes_the_target_version(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_x()], [_x("y")], opset=22), path)
    assert cli.check_main([str(path)]) == 1 and "TensorRT 10.3 parses opsets 9..20" in capsys.readouterr().out
    assert cli.check_main([str(path), "--trt-version", "10.15"]) == 0
