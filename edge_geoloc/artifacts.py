"""Self-describing, safely loadable model artifacts.

A checkpoint is a ``.safetensors`` file (weights only, never pickled code) whose header metadata holds a JSON
document: model name and constructor arguments, the resolved config, preprocessing, package versions and a
schema version. Optimizer/scheduler state for resuming goes to a sibling ``.train_state.pt`` loaded with
``torch.load(weights_only=True)``. Helpers for hashes and atomic writes live here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
# The input normalisation of every model unless its backbone's pretrained config says otherwise (timm's
# ImageNet defaults); the one place these numbers are written.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_META_KEY = "edge_geoloc"


class ArtifactError(ValueError):
    """An artifact is missing, corrupt, of the wrong kind, or does not match its recorded hash."""


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_versions(names: tuple[str, ...] = ("edge-geoloc", "torch", "timm", "numpy", "onnx", "onnxruntime")
                     ) -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (missing ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file so that readers see either the old or the complete new content (fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself."""

    kind: str  # "retrieval" | "localizer"
    model_name: str
    model_kwargs: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=package_versions)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def save_checkpoint(path: str | Path, state_dict: Mapping[str, Any], meta: CheckpointMeta) -> Path:
    """Save weights as safetensors with ``meta`` in the header; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ArtifactError(f"checkpoints are .safetensors files, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={_META_KEY: meta.to_json()})
    os.replace(tmp, path)
    return path


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """Read only the metadata of a checkpoint (no tensors are loaded)."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ArtifactError(f"{path} is not a readable safetensors checkpoint: {err}") from err
    if raw is None:
        raise ArtifactError(f"{path} has no edge_geoloc metadata; it was not written by save_checkpoint")
    return CheckpointMeta.from_json(raw)


def load_checkpoint(path: str | Path, expected_kind: str | None = None) -> tuple[dict[str, Any], CheckpointMeta]:
    """Load (state_dict, meta) on the CPU; checks the kind when ``expected_kind`` is given."""
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    if expected_kind is not None and meta.kind != expected_kind:
        raise ArtifactError(f"{path} is a {meta.kind!r} checkpoint, expected {expected_kind!r}")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as err:
        raise ArtifactError(f"{path}: cannot read tensors: {err}") from err
    return state, meta


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact not found: {path}")
    return path
