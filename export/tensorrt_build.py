"""ONNX -> TensorRT engine with the ``tensorrt`` Python API (TensorRT 10 and 11), run on the target device.

Two precision paths, chosen by :func:`plan_build` from the TensorRT version and the ONNX file:

- **TensorRT 10 (JetPack 6)**: FP16 / INT8 builder flags; INT8 either from an implicit calibrator
  (``IInt8MinMaxCalibrator`` fed with calibration frames in batches of the profile's opt batch, the profile
  also set as the calibration profile, its cache written next to the ONNX) or, when the ONNX already holds
  Q/DQ nodes, from those (weakly typed with INT8 + FP16 so the layers outside Q/DQ pairs may use FP16, or
  strongly typed on request).
- **TensorRT 11**: the precision builder flags and calibrators are gone; the network is created
  ``STRONGLY_TYPED`` and precision comes from the ONNX: Q/DQ nodes (``edge-geoloc export quantize --target
  tensorrt``) for INT8, fp16 tensors for FP16.

fp32 builds clear the TF32 flag TensorRT sets by default (unless allowed). Every build uses an explicit
optimisation profile per input, a workspace limit, a timing cache reused across builds and keyed by TensorRT
version and GPU compute capability, and writes the engine's manifest (:mod:`edge_geoloc.export.manifest`). The
pure logic (profiles, plans, paths, reuse decisions) runs anywhere; :func:`build_engine` needs TensorRT.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_geoloc.export.config import EngineConfig
from edge_geoloc.export.manifest import DeviceInfo, build_engine_manifest, engine_mismatches
from edge_geoloc.export.sidecar import input_preprocessing, read_sidecar, sidecar_path, tensor_specs, write_sidecar
from edge_geoloc.export.tensorrt_api import (  # noqa: F401  (re-exported: the build API raises and names these)
    EngineBuildError,
    calibration_batch,
    calibration_cache_path,
    import_tensorrt,
    run_tensorrt_build,
)

from edge_geoloc.artifacts import ArtifactError, atomic_write_bytes

logger = logging.getLogger(__name__)

Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max) shapes


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do, decided before touching TensorRT."""

    trt_major: int
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    use_calibrator: bool
    notes: tuple[str, ...] = ()
    cleared_flags: tuple[str, ...] = ()  # builder flags on by default that this build turns off


def trt_major(version: str) -> int:
    match = re.match(r"(\d+)", version)
    if not match:
        raise ValueError(f"cannot read a TensorRT version from {version!r}")
    return int(match.group(1))


def plan_build(trt_version: str, cfg: EngineConfig, onnx_has_qdq: bool) -> BuildPlan:
    """Network flags, builder flags and calibration for ``cfg.precision`` on this TensorRT version."""
    major = trt_major(trt_version)
    if major < 10:
        raise EngineBuildError(f"TensorRT {trt_version} is too old: edge-geoloc uses the TensorRT 10+ tensor API "
                               "(JetPack 6 or newer)")
    flags: list[str] = []
    if cfg.version_compatible:
        flags.append("VERSION_COMPATIBLE")
    if cfg.dla_core >= 0:
        flags.append("GPU_FALLBACK")
    cleared = ("TF32",) if cfg.precision == "fp32" and not cfg.allow_tf32 else ()
    if major >= 11:
        plan = _plan_strongly_typed(major, cfg, onnx_has_qdq, flags)
        return BuildPlan(**{**plan.__dict__, "cleared_flags": cleared})
    if onnx_has_qdq:
        return _plan_qdq_tensorrt_10(major, cfg, flags, cleared)
    if cfg.precision in ("fp16", "best"):
        flags.append("FP16")
    if cfg.precision in ("int8", "best"):
        flags.append("INT8")
    use_calibrator = "INT8" in flags
    if use_calibrator and cfg.calibration_dir is None:
        raise EngineBuildError("INT8 on TensorRT 10 needs calibration frames: pass --calib DIR (field-log or "
                               "synthetic frames) or 'synthetic', or quantise the ONNX first with "
                               "`edge-geoloc export quantize --target tensorrt`")
    return BuildPlan(major, False, tuple(flags), use_calibrator, cleared_flags=cleared)


def _plan_qdq_tensorrt_10(major: int, cfg: EngineConfig, flags: list[str], cleared: tuple[str, ...]) -> BuildPlan:
    """Q/DQ ONNX on TensorRT 10: scales from the graph, no calibrator.

    Strongly typed keeps every non-quantised layer in the ONNX's fp32; weakly typed with INT8 + FP16 lets
    TensorRT run those layers in FP16 as well (what a Q/DQ model on an Orin usually wants).
    """
    if cfg.strongly_typed_qdq or cfg.precision == "fp32":
        return BuildPlan(major, True, tuple(flags), False, ("precision from the ONNX Q/DQ nodes (strongly typed): "
                                                            "non-quantised layers stay fp32",), cleared)
    return BuildPlan(major, False, (*flags, "INT8", "FP16"), False,
                     ("precision from the ONNX Q/DQ nodes; layers outside Q/DQ pairs may run in FP16 "
                      "(--strongly-typed keeps them fp32)",))


def _plan_strongly_typed(major: int, cfg: EngineConfig, onnx_has_qdq: bool, flags: list[str]) -> BuildPlan:
    if cfg.precision in ("int8", "best") and not onnx_has_qdq:
        raise EngineBuildError(f"TensorRT {major} removed implicit INT8 calibration: precision comes from Q/DQ "
                               "nodes in the ONNX. Run `edge-geoloc export quantize MODEL.onnx --target tensorrt "
                               "--calib DIR` and build the resulting MODEL.int8.onnx")
    notes = ["strongly typed: tensor types come from the ONNX"]
    if cfg.precision == "fp16" and not onnx_has_qdq:
        notes.append("FP16 needs fp16 tensors in the ONNX (e.g. NVIDIA ModelOpt autocast); an fp32 ONNX builds "
                     "an fp32 engine")
    return BuildPlan(major, True, tuple(flags), False, tuple(notes))


def onnx_has_qdq(onnx_path: str | Path) -> bool:
    """Whether the graph holds QuantizeLinear / DequantizeLinear nodes (explicit quantisation)."""
    from edge_geoloc.export.trt_check import load_onnx

    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in load_onnx(onnx_path).graph.node)


def input_profiles(sidecar: Mapping[str, Any], cfg: EngineConfig) -> dict[str, Profile]:
    """(min, opt, max) shape per input: the batch dim spans 1..max_batch; a dynamic height and width span
    ``min_hw``..``max_hw`` around ``opt_hw`` (default: the size the sidecar records); every other dim is fixed."""
    profiles = {}
    for spec in tensor_specs(sidecar, "inputs"):
        dynamic = isinstance(spec.shape[0], str)
        if not dynamic and cfg.max_batch > 1:
            raise EngineBuildError(f"input {spec.name!r} has a static batch of {spec.shape[0]} but max_batch is "
                                   f"{cfg.max_batch}; re-export with `edge-geoloc export --dynamic-batch`")
        batches = (1, cfg.opt_batch, cfg.max_batch) if dynamic else (spec.shape[0],) * 3
        sizes = hw_profile(sidecar, spec.name, cfg) if spec.dynamic_hw else (None,) * 3
        profiles[spec.name] = tuple(spec.concrete_shape(b, hw) for b, hw in zip(batches, sizes, strict=True))
    return profiles


def hw_profile(sidecar: Mapping[str, Any], input_name: str, cfg: EngineConfig) -> tuple[tuple[int, int], ...]:
    """(min, opt, max) height and width of an input of dynamic size; each a multiple of its stride, in order."""
    prep = input_preprocessing(sidecar, input_name)
    sizes = (tuple(cfg.min_hw), tuple(cfg.opt_hw or prep.size_hw), tuple(cfg.max_hw))
    stride = prep.stride or 1
    if any(side % stride for hw in sizes for side in hw):
        raise EngineBuildError(f"input {input_name!r} takes sizes that are multiples of {stride}; min/opt/max "
                               f"height and width {sizes} are not")
    if not all(low <= opt <= high for low, opt, high in zip(*sizes, strict=True)):
        raise EngineBuildError(f"input {input_name!r}: need min_hw <= opt_hw <= max_hw per side, got {sizes}")
    return sizes


def timing_cache_for(path: str | Path, trt_version: str, compute_capability: str) -> Path:
    """``timing.cache`` -> ``timing.trt10.3.0.sm8.7.cache``: tactic timings belong to one TensorRT and one GPU."""
    path = Path(path)
    key = f"trt{trt_version}.sm{compute_capability}"
    return path.with_name(f"{path.stem}.{key}{path.suffix or '.cache'}")


def engine_path_for(onnx_path: str | Path, precision: str) -> Path:
    """``model.onnx`` -> ``model.fp16.engine`` (its manifest: ``model.fp16.json``)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.engine")


def reusable_engine(engine: Path, onnx_sha256: str, device: DeviceInfo, precision: str, force: bool) -> bool:
    """An existing engine is reused when its manifest matches this device, ONNX file and precision."""
    if force or not engine.is_file() or not sidecar_path(engine).is_file():
        return False
    try:
        manifest = read_sidecar(engine)
    except ArtifactError as err:
        logger.info("rebuilding %s: %s", engine.name, err)
        return False
    problems = engine_mismatches(manifest, device, onnx_sha256)
    if manifest.get("engine", {}).get("precision") != precision:
        problems.append("different precision")
    if problems:
        logger.info("rebuilding %s: %s", engine.name, "; ".join(problems))
    return not problems


def rebuild_command(onnx_path: Path, cfg: EngineConfig) -> str:
    """The CLI call that rebuilds this engine (stored in the manifest, quoted by mismatch errors)."""
    parts = ["edge-geoloc build-engine", onnx_path.name, f"--precision {cfg.precision}", "--force"]
    if cfg.max_batch > 1:
        parts += [f"--max-batch {cfg.max_batch}", f"--opt-batch {cfg.opt_batch}"]
    defaults = EngineConfig()
    for flag, hw, default in (("--min-hw", cfg.min_hw, defaults.min_hw), ("--opt-hw", cfg.opt_hw, defaults.opt_hw),
                              ("--max-hw", cfg.max_hw, defaults.max_hw)):
        if hw is not None and tuple(hw) != default:
            parts.append(f"{flag} {hw[0]},{hw[1]}")
    if cfg.calibration_dir is not None:
        parts.append(f"--calib {cfg.calibration_dir}")
    if cfg.allow_tf32:
        parts.append("--allow-tf32")
    if cfg.strongly_typed_qdq:
        parts.append("--strongly-typed")
    return " ".join(parts)


def build_engine(onnx_path: str | Path, cfg: EngineConfig, out_path: str | Path | None = None) -> Path:
    """Build (or reuse) the engine of ``onnx_path`` on this device; returns the engine path."""
    from edge_geoloc.export.manifest import current_device_info
    import_tensorrt()  # fail first, with install instructions, where TensorRT is missing
    onnx_path = Path(onnx_path)
    sidecar = read_sidecar(onnx_path)
    onnx_sha = sidecar["sha256"]["artifact"]
    device = current_device_info()
    engine = Path(out_path) if out_path else engine_path_for(onnx_path, cfg.precision)
    if reusable_engine(engine, onnx_sha, device, cfg.precision, cfg.force):
        logger.info("reusing %s (built for this device and ONNX; --force rebuilds)", engine)
        return engine
    plan = plan_build(device.tensorrt_version, cfg, onnx_has_qdq(onnx_path))
    profiles = input_profiles(sidecar, cfg)
    if cfg.timing_cache is not None:
        cfg = replace(cfg, timing_cache=timing_cache_for(cfg.timing_cache, device.tensorrt_version,
                                                         device.compute_capability))
    plan_bytes, calibration_id = run_tensorrt_build(onnx_path, sidecar, cfg, plan, profiles)
    atomic_write_bytes(engine, plan_bytes)
    build = {"strongly_typed": plan.strongly_typed, "builder_flags": list(plan.builder_flags),
             "cleared_flags": list(plan.cleared_flags), "timing_cache": cfg.timing_cache and cfg.timing_cache.name,
             "workspace_mb": cfg.workspace_mb, "optimization_level": cfg.optimization_level,
             "version_compatible": cfg.version_compatible, "dla_core": cfg.dla_core,
             "calibration_id": calibration_id, "rebuild_command": rebuild_command(onnx_path, cfg)}
    manifest = build_engine_manifest(sidecar, device, precision=cfg.precision, onnx_sha256=onnx_sha,
                                     profiles=profiles, build=build)
    write_sidecar(engine, manifest)
    logger.info("built %s (%s, TensorRT %s, sm %s)", engine, cfg.precision, device.tensorrt_version,
                device.compute_capability)
    return engine
