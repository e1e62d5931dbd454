"""The JSON sidecar that makes every exported model file (ONNX, TensorRT engine) describe itself.

``model.onnx`` has ``model.json`` next to it (``model.int8.onnx`` -> ``model.int8.json``, ``model.engine`` ->
``model.json`` is avoided by naming engines ``model.<precision>.engine`` -> ``model.<precision>.json``). The
runtime builds its preprocessing and checks its inputs from the sidecar alone, never from retyped constants.

Top-level keys (``schema_version`` 1)::

    format            "edge_geoloc.sidecar"
    kind              "retrieval" | "localizer" | "matcher"
    artifact          file name of the model file the sidecar describes
    model             {"name", "kwargs", "config"}   (registry name and constructor overrides)
    inputs / outputs  [{"name", "shape" (ints; "batch" for a dynamic batch, "height"/"width" for a dynamic input
                      size, e.g. the map matcher's; "height/4" names an output dim that follows it), "dtype"}, ...]
    preprocessing     {input_name: {"size_hw", "mean", "std", "color_order", "interpolation", "scale", "layout",
                      and where they apply "alignment", "camera", "ground_size_m", "m_per_px", "stride", ...}}
                      (for an input of dynamic size, ``size_hw`` is the size it is made for and traced at)
    precision         "fp32" | "int8-qdq" | "fp16" | "int8" | "best"
    opset             ONNX opset (absent for a PyTorch reference)
    sha256            {"artifact": hash of the model file, "weights": hash of the state dict, "checkpoint": ...}
    versions          package versions at export time
    export            the export options; "parity": the parity-gate report; "engine": TensorRT build facts
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_geoloc.artifacts import IMAGENET_MEAN, IMAGENET_STD, ArtifactError, atomic_write_json, sha256_file

SIDECAR_FORMAT = "edge_geoloc.sidecar"
SIDECAR_VERSION = 1
COLOR_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("bilinear", "area", "nearest", "bicubic")
DYNAMIC_HW = ("height", "width")  # symbolic dims of an input whose size is free (fully convolutional models)


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output; a dim is an int or a symbolic name ("batch")."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), tuple(data["shape"]), str(data.get("dtype", "float32")))

    @property
    def dynamic_hw(self) -> bool:
        """Whether the height and width are free (``"height"`` / ``"width"`` dims)."""
        return any(d in DYNAMIC_HW for d in self.shape)

    def concrete_shape(self, batch: int = 1, hw: tuple[int, int] | None = None) -> tuple[int, ...]:
        """The shape with its symbolic dims filled in: ``hw`` for a dynamic height and width, ``batch`` for the
        batch dim."""
        sizes = dict(zip(DYNAMIC_HW, hw, strict=True)) if hw is not None else {}
        if self.dynamic_hw and not sizes:
            raise ValueError(f"input {self.name!r} has a dynamic height and width; give its size (hw=(H, W))")
        return tuple(d if isinstance(d, int) else int(sizes.get(d, batch)) for d in self.shape)


@dataclass(frozen=True)
class InputPreprocessing:
    """How an ``(H, W, 3) uint8`` image becomes a model input: ``((resize(img) * scale) - mean) / std``, NCHW."""

    size_hw: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    interpolation: str = "bilinear"
    scale: float = 1.0 / 255.0
    layout: str = "NCHW"
    alignment: str | None = None  # localizer query: "north_up" = rotate the view to north-up before the model
    ground_size_m: float | None = None  # scale-aligned localizer: metres of ground the input covers
    camera: str | None = None  # localizer query: the camera it takes ("nadir", "panorama", "pinhole")
    m_per_px: float | None = None  # map matcher: ground resolution of every input (frame and map alike)
    stride: int | None = None  # map matcher: input pixels per feature cell (inputs are multiples of it)
    tile_size_m: float | None = None  # map matcher: ground size of the tiles it was trained to search
    search_radius_m: float | None = None  # map matcher: search radius around a tile centre it was trained with
    receptive_field_px: int | None = None  # map matcher: input px either side of a cell that can change it

    def __post_init__(self) -> None:
        if self.color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.size_hw) != 2 or min(self.size_hw) <= 0:
            raise ValueError(f"size_hw must be two positive ints (H, W), got {self.size_hw!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputPreprocessing:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("size_hw", "mean", "std"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass(frozen=True)
class ModelDescription:
    """Everything about a model's interface that the sidecar records, before any file exists."""

    kind: str
    model_name: str
    model_kwargs: dict[str, Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict[str, InputPreprocessing]
    model_config: dict[str, Any] = field(default_factory=dict)


def sidecar_path(artifact: str | Path) -> Path:
    """``dir/model.onnx`` -> ``dir/model.json``."""
    return Path(artifact).with_suffix(".json")


def build_sidecar(desc: ModelDescription, *, precision: str = "fp32", opset: int | None = None,
                  hashes: Mapping[str, str] | None = None, versions: Mapping[str, str] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar document of a model (without the artifact's own hash, added by :func:`write_sidecar`)."""
    sidecar: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "schema_version": SIDECAR_VERSION,
        "kind": desc.kind,
        "model": {"name": desc.model_name, "kwargs": dict(desc.model_kwargs), "config": dict(desc.model_config)},
        "inputs": [t.to_dict() for t in desc.inputs],
        "outputs": [t.to_dict() for t in desc.outputs],
        "preprocessing": {name: p.to_dict() for name, p in desc.preprocessing.items()},
        "precision": precision,
        "sha256": dict(hashes or {}),
        "versions": dict(versions or {}),
    }
    if opset is not None:
        sidecar["opset"] = int(opset)
    sidecar.update(dict(extra or {}))
    return sidecar


def write_sidecar(artifact: str | Path, sidecar: Mapping[str, Any], artifact_sha256: str | None = None) -> Path:
    """Write ``sidecar`` next to ``artifact``, recording the artifact's file name and sha256 (computed unless
    the caller just computed it)."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"cannot write a sidecar for {artifact}: the file does not exist")
    doc = dict(sidecar)
    doc["artifact"] = artifact.name
    doc["sha256"] = {**dict(doc.get("sha256", {})), "artifact": artifact_sha256 or sha256_file(artifact)}
    return atomic_write_json(sidecar_path(artifact), doc)


def read_sidecar(artifact: str | Path, verify_hash: bool = True) -> dict[str, Any]:
    """Read and check the sidecar of ``artifact``; with ``verify_hash`` the file must match its recorded sha256."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"model file not found: {artifact}")
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"missing sidecar {path.name} next to {artifact}: the runtime configures itself from it. "
            "Re-export the model with `edge-geoloc export` (or copy the .json that was exported with it)."
        )
    sidecar = parse_sidecar(path)
    if verify_hash:
        check_artifact_hash(artifact, sidecar)
    return sidecar


def parse_sidecar(path: Path) -> dict[str, Any]:
    """Load a sidecar file and check its format, version and required keys."""
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"sidecar {path} is not readable JSON ({err}); re-export the model") from err
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise ArtifactError(f"{path} is not an edge_geoloc sidecar (expected format {SIDECAR_FORMAT!r})")
    if int(sidecar.get("schema_version", 0)) > SIDECAR_VERSION:
        raise ArtifactError(f"{path} has sidecar schema {sidecar['schema_version']}, newer than this edge_geoloc "
                            f"reads ({SIDECAR_VERSION}); upgrade edge-geoloc on this machine")
    missing = [k for k in ("kind", "inputs", "outputs", "preprocessing") if k not in sidecar]
    if missing:
        raise ArtifactError(f"sidecar {path} lacks {', '.join(missing)}; re-export the model")
    return sidecar


def check_artifact_hash(artifact: Path, sidecar: Mapping[str, Any]) -> None:
    """Fail if ``artifact`` is not the file the sidecar was written for (edited, truncated or swapped)."""
    expected = sidecar.get("sha256", {}).get("artifact")
    if not expected:
        raise ArtifactError(f"sidecar of {artifact} records no sha256 for the file; re-export the model")
    actual = sha256_file(artifact)
    if actual != expected:
        raise ArtifactError(
            f"{artifact.name} does not match its sidecar {sidecar_path(artifact).name}: sha256 {actual[:12]}... "
            f"!= recorded {expected[:12]}.... The file was modified, corrupted or replaced after export; "
            "re-export it (or copy the matching .json next to it)."
        )


def tensor_specs(sidecar: Mapping[str, Any], which: str) -> tuple[TensorSpec, ...]:
    """The ``"inputs"`` or ``"outputs"`` of a sidecar as :class:`TensorSpec` objects."""
    return tuple(TensorSpec.from_dict(t) for t in sidecar[which])


def input_preprocessing(sidecar: Mapping[str, Any], input_name: str) -> InputPreprocessing:
    """The preprocessing recorded for one input; a clear error names the inputs that have one."""
    table = sidecar.get("preprocessing", {})
    if input_name not in table:
        raise KeyError(f"no preprocessing for input {input_name!r}; inputs with preprocessing: {sorted(table)}")
    return InputPreprocessing.from_dict(table[input_name])


def input_shape(sidecar: Mapping[str, Any], spec: TensorSpec, batch: int = 1) -> tuple[int, ...]:
    """A concrete shape of ``spec``: a dynamic height and width take the size its preprocessing records."""
    hw = input_preprocessing(sidecar, spec.name).size_hw if spec.dynamic_hw else None
    return spec.concrete_shape(batch, hw)


def describe_io(specs: Sequence[TensorSpec]) -> str:
    """``image[1, 3, 224, 224] float32, ...`` for error messages."""
    return ", ".join(f"{t.name}{list(t.shape)} {t.dtype}" for t in specs)
