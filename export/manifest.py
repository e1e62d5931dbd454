"""Engine manifests: what a TensorRT engine was built with and for, checked before it is loaded.

A serialized engine only runs on the TensorRT version and GPU (compute capability) it was built on
(``Serialization assertion stdVersionRead == serializationVersion failed``, ``expecting compute 8.7 got
compute 7.2``). The manifest is the engine's sidecar (``model.fp16.engine`` -> ``model.fp16.json``): the ONNX
sidecar's inputs/outputs/preprocessing plus an ``"engine"`` section with the TensorRT version, GPU name,
compute capability, JetPack/L4T, precision, shapes, the ONNX sha256 and the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_geoloc.export.sidecar import read_sidecar

from edge_geoloc.artifacts import ArtifactError

# L4T release -> JetPack (NVIDIA's JetPack archive; the mapping is many-to-one across minor L4T revisions).
_L4T_TO_JETPACK = {"35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2", "35.5": "5.1.3",
                   "35.6": "5.1.4", "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1/6.2", "38.2": "7.0"}


class EngineMismatchError(ArtifactError):
    """An engine was built for another TensorRT version, GPU, JetPack or ONNX file than the one at hand."""


@dataclass(frozen=True)
class DeviceInfo:
    """The facts an engine depends on; ``None`` where unknown (e.g. JetPack on a desktop GPU)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    l4t_version: str | None = None
    jetpack_version: str | None = None
    cuda_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_l4t_release(text: str) -> str | None:
    """``/etc/nv_tegra_release`` (``# R36 (release), REVISION: 4.3, ...``) -> ``"36.4.3"``."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def jetpack_from_l4t(l4t: str | None) -> str | None:
    """JetPack release of an L4T version (``"36.4.3"`` -> ``"6.1/6.2"``), ``None`` if unknown."""
    if not l4t:
        return None
    major_minor = ".".join(l4t.split(".")[:2])
    return _L4T_TO_JETPACK.get(major_minor)


def read_l4t_version(path: str | Path = "/etc/nv_tegra_release") -> str | None:
    path = Path(path)
    return parse_l4t_release(path.read_text(errors="replace")) if path.is_file() else None


def current_device_info(device_index: int = 0) -> DeviceInfo:
    """TensorRT version, GPU name and compute capability of this machine (needs tensorrt + pycuda)."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda.init()
    dev = cuda.Device(device_index)
    major, minor = dev.compute_capability()
    l4t = read_l4t_version()
    cuda_version = ".".join(str(v) for v in cuda.get_version())
    return DeviceInfo(trt.__version__, dev.name(), f"{major}.{minor}", l4t, jetpack_from_l4t(l4t), cuda_version)


def engine_cache_key(onnx_sha256: str, device: DeviceInfo, precision: str,
                     profiles: Mapping[str, Any], calibration_id: str | None = None) -> str:
    """A short stable key of everything that makes two engines (or timing caches) interchangeable."""
    doc = {"onnx": onnx_sha256, "trt": device.tensorrt_version, "sm": device.compute_capability,
           "jetpack": device.jetpack_version or device.l4t_version, "precision": precision,
           "profiles": {k: [list(s) for s in v] for k, v in sorted(profiles.items())}, "calib": calibration_id}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def build_engine_manifest(onnx_sidecar: Mapping[str, Any], device: DeviceInfo, *, precision: str,
                          onnx_sha256: str, profiles: Mapping[str, Any], build: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's sidecar: the ONNX sidecar's interface + the ``engine`` section."""
    manifest = {k: v for k, v in onnx_sidecar.items() if k not in ("sha256", "artifact", "parity")}
    manifest["precision"] = precision
    manifest["sha256"] = {"onnx": onnx_sha256, **{k: v for k, v in onnx_sidecar.get("sha256", {}).items()
                                                  if k in ("weights", "checkpoint")}}
    manifest["engine"] = {**device.to_dict(), "precision": precision,
                          "profiles": {k: [list(s) for s in v] for k, v in profiles.items()},
                          "cache_key": engine_cache_key(onnx_sha256, device, precision, profiles,
                                                        build.get("calibration_id")),
                          **dict(build)}
    return manifest


def read_engine_manifest(engine: str | Path, verify_hash: bool = True) -> dict[str, Any]:
    """The manifest next to ``engine``; it must have an ``engine`` section (else it is an ONNX sidecar)."""
    manifest = read_sidecar(engine, verify_hash=verify_hash)
    if "engine" not in manifest:
        raise ArtifactError(f"the sidecar of {engine} has no 'engine' section; build the engine with "
                            "`edge-geoloc build-engine MODEL.onnx`")
    return manifest


def engine_mismatches(manifest: Mapping[str, Any], device: DeviceInfo, onnx_sha256: str | None = None) -> list[str]:
    """Human-readable differences between what the engine was built for and this machine (empty: compatible)."""
    eng = manifest.get("engine", {})
    problems = []
    built, here = str(eng.get("tensorrt_version")), device.tensorrt_version
    if not _tensorrt_compatible(built, here, bool(eng.get("version_compatible"))):
        problems.append(f"TensorRT {built} at build time, {here} here")
    if str(eng.get("compute_capability")) != device.compute_capability:
        problems.append(f"GPU compute capability {eng.get('compute_capability')} ({eng.get('gpu_name')}) at build "
                        f"time, {device.compute_capability} ({device.gpu_name}) here")
    if eng.get("l4t_version") and device.l4t_version and eng["l4t_version"] != device.l4t_version:
        problems.append(f"L4T {eng['l4t_version']} (JetPack {eng.get('jetpack_version')}) at build time, "
                        f"{device.l4t_version} (JetPack {device.jetpack_version}) here")
    if onnx_sha256 and manifest.get("sha256", {}).get("onnx") != onnx_sha256:
        problems.append("the ONNX file changed since the engine was built")
    return problems


def check_engine_manifest(manifest: Mapping[str, Any], device: DeviceInfo, engine: str | Path = "the engine",
                          onnx_sha256: str | None = None) -> None:
    """Raise :class:`EngineMismatchError` with the rebuild command if the engine does not fit this machine."""
    problems = engine_mismatches(manifest, device, onnx_sha256)
    if problems:
        command = manifest.get("engine", {}).get("rebuild_command") or "edge-geoloc build-engine MODEL.onnx --force"
        raise EngineMismatchError(f"{engine} cannot run here: {'; '.join(problems)}. Engines are tied to the "
                                  f"TensorRT version and GPU they were built on; rebuild it on this device with "
                                  f"`{command}` (or set force_engine_update: true).")


def _tensorrt_compatible(built: str, here: str, version_compatible: bool) -> bool:
    """Same version (major.minor.patch), or a newer runtime of the same major for version-compatible engines."""
    b, h = _version_tuple(built), _version_tuple(here)
    if version_compatible:
        return b[0] == h[0] and h >= b
    return b[:3] == h[:3]


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:4]]
    return tuple(parts + [0] * (4 - len(parts)))
