"""Static TensorRT-compatibility audit of an ONNX graph, runnable anywhere (no TensorRT needed).

Checks, against the operator and type matrix of TensorRT's ONNX parser (onnx-tensorrt ``docs/operators.md``)
**at the targeted TensorRT version** (default 10.3, JetPack 6.1/6.2): every node's op type (default domain
only; contrib domains such as ``com.microsoft`` are ORT-only), tensor element types, Q/DQ zero points (must be
0) and the opset range that version parses. Offenders are listed with node names so the fix is obvious; a
clean report is no proof that the build succeeds, but an offender is a sure failure on the device.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import ArtifactError

DEFAULT_TARGET = "10.3"  # JetPack 6.1 / 6.2

# Highest opset the parser of a TensorRT version reads (onnx-tensorrt docs/operators.md: "TensorRT 10.0
# supports ... opset 9 to opset 20", "TensorRT 10.15 ... 9 to 24"). Releases in between are taken at the
# lower bound: a false alarm costs a re-export, a false pass costs a failed build on the device.
MIN_OPSET = 9
MAX_OPSET_SINCE = ((10, 0, 20), (10, 15, 24))

# Operators of SUPPORTED_OPS that came after TensorRT 10.0, with the release that added them (onnx-tensorrt
# release notes: STFT 10.5, Attention 10.14, RMSNormalization 10.15, Swish 11.0).
OP_ADDED_IN = {"STFT": (10, 5), "Attention": (10, 14), "RMSNormalization": (10, 15),
               "RotaryEmbedding": (10, 15), "Swish": (11, 0)}

# Operators of the default ONNX domain that TensorRT 10's parser imports (its support matrix, "Y" rows).
SUPPORTED_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "Attention",
    "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv",
    "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
    "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool",
    "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU",
    "HammingWindow", "HannWindow", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
    "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
    "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
    "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not",
    "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
    "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RMSNormalization", "RNN", "RoiAlign",
    "RotaryEmbedding", "Round", "STFT", "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
    "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign",
    "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK",
    "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor", "Swish",
})


def parse_trt_version(version: str) -> tuple[int, int]:
    """``"10.3.0.30"`` -> ``(10, 3)``; a clear error for anything else."""
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ValueError(f"cannot read a TensorRT version from {version!r} (expected e.g. 10.3)") from None


def opset_range(target: tuple[int, int]) -> tuple[int, int]:
    """(lowest, highest) opset the parser of TensorRT ``target`` reads."""
    highest = MAX_OPSET_SINCE[0][2]
    for major, minor, max_opset in MAX_OPSET_SINCE:
        if target >= (major, minor):
            highest = max_opset
    return MIN_OPSET, highest


def op_supported(op_type: str, target: tuple[int, int]) -> bool:
    return op_type in SUPPORTED_OPS and target >= OP_ADDED_IN.get(op_type, (0, 0))

# ONNX TensorProto element types TensorRT accepts (DOUBLE is cast down to FLOAT, with a warning).
SUPPORTED_DTYPES = frozenset({"FLOAT", "FLOAT16", "BFLOAT16", "INT8", "INT4", "UINT8", "INT32", "INT64", "BOOL",
                              "FLOAT8E4M3FN", "DOUBLE"})
_WARN_DTYPES = {"DOUBLE": "cast down to float32 by TensorRT (values clamped to +-FLT_MAX)"}


@dataclass(frozen=True)
class Offender:
    where: str  # node or tensor name
    what: str  # op type or dtype
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what} - {self.why}"


@dataclass
class AuditReport:
    path: str
    opset: int
    node_count: int
    tensorrt: str = DEFAULT_TARGET
    op_counts: dict[str, int] = field(default_factory=dict)
    offenders: list[Offender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.offenders

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tensorrt": self.tensorrt, "opset": self.opset, "node_count": self.node_count,
                "op_counts": self.op_counts,
                "offenders": [str(o) for o in self.offenders], "warnings": self.warnings}

    def format(self) -> str:
        head = f"{self.path}: opset {self.opset}, {self.node_count} nodes, {len(self.op_counts)} op types"
        if self.ok:
            lines = [head, f"OK: every operator and dtype is supported by TensorRT {self.tensorrt}'s ONNX parser"]
        else:
            lines = [head, f"{len(self.offenders)} offender(s) TensorRT's ONNX parser will reject:"]
            lines += [f"  - {o}" for o in self.offenders]
        return "\n".join(lines + [f"  warning: {w}" for w in self.warnings])


def load_onnx(path: str | Path) -> Any:
    """Load an ONNX model with a clear error for missing or corrupted files."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf DecodeError and friends
        raise ArtifactError(f"{path} is not a valid ONNX file ({type(err).__name__}: {err}); it may be truncated "
                            "or corrupted: re-export it with `edge-geoloc export`") from err


def audit_onnx(path: str | Path, tensorrt: str = DEFAULT_TARGET) -> AuditReport:
    """Audit an ONNX file for TensorRT version ``tensorrt`` (see the module docstring)."""
    return audit_model(load_onnx(path), str(path), tensorrt)


def audit_model(model: Any, name: str = "<model>", tensorrt: str = DEFAULT_TARGET) -> AuditReport:
    import onnx

    target = parse_trt_version(tensorrt)
    low, high = opset_range(target)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    with contextlib.suppress(Exception):  # an unknown custom op stops inference; the node check still names it
        model = onnx.shape_inference.infer_shapes(model)  # fills value_info so intermediate dtypes are seen
    graph = model.graph
    report = AuditReport(name, opset, len(graph.node), tensorrt)
    if not low <= opset <= high:
        report.offenders.append(Offender("model", f"opset {opset}", f"TensorRT {tensorrt} parses opsets "
                                         f"{low}..{high}; re-export with --opset 17"))
    for node in graph.node:
        report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
        report.offenders += _node_offenders(node, target)
    report.offenders += _zero_point_offenders(graph)
    for tensor_name, dtype in _tensor_dtypes(graph):
        type_name = onnx.TensorProto.DataType.Name(dtype)
        if type_name not in SUPPORTED_DTYPES:
            report.offenders.append(Offender(tensor_name, type_name, "element type TensorRT does not support"))
        elif type_name in _WARN_DTYPES:
            report.warnings.append(f"{tensor_name}: {type_name} {_WARN_DTYPES[type_name]}")
    return report


def _node_offenders(node: Any, target: tuple[int, int]) -> list[Offender]:
    where = node.name or f"<unnamed {node.op_type}>"
    if node.domain not in ("", "ai.onnx"):
        return [Offender(where, f"{node.domain}::{node.op_type}", "custom-domain operator (ONNX Runtime contrib "
                         "op?); export without ORT graph optimisations or implement a TensorRT plugin")]
    if node.op_type not in SUPPORTED_OPS:
        return [Offender(where, node.op_type, "operator not supported by TensorRT's ONNX parser")]
    if not op_supported(node.op_type, target):
        added = ".".join(map(str, OP_ADDED_IN[node.op_type]))
        return [Offender(where, node.op_type, f"operator added in TensorRT {added}; the target "
                         f"{target[0]}.{target[1]} cannot parse it (decompose it, or target a newer TensorRT)")]
    if node.op_type == "Resize":
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
        if mode not in ("nearest", "linear"):
            return [Offender(where, f"Resize(mode={mode})", "TensorRT supports nearest and linear resize only")]
    return []


def _zero_point_offenders(graph: Any) -> list[Offender]:
    """Q/DQ zero points must be 0: TensorRT only does symmetric quantisation."""
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is not None and numpy_helper.to_array(zp).any():
                found.append(Offender(node.name or node.input[2], f"{node.op_type} zero point",
                                      "non-zero zero point (asymmetric quantisation); quantise with "
                                      "`edge-geoloc export quantize --target tensorrt` (symmetric int8)"))
    return found


def _tensor_dtypes(graph: Any) -> list[tuple[str, int]]:
    """(name, element type) of graph inputs, outputs, value infos and initializers."""
    typed = [(v.name, v.type.tensor_type.elem_type) for v in (*graph.input, *graph.output, *graph.value_info)
             if v.type.HasField("tensor_type")]
    return typed + [(t.name, t.data_type) for t in graph.initializer]
