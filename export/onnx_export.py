"""PyTorch -> ONNX: legacy TorchScript exporter (``dynamo=False``), opset 17+, static shapes by default (a
dynamic batch on request; a map matcher's height and width are always dynamic).

The file is written into a staging folder, checked (``onnx.checker``), optionally simplified (onnxslim or
onnxsim when installed), described by a JSON sidecar and passed through the parity gate; only then is it moved
to its final name. A failed gate raises :class:`ParityError` and leaves nothing at the target path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edge_geoloc.export.config import ExportConfig, ParityConfig
from edge_geoloc.export.parity import ParityError, run_parity
from edge_geoloc.export.samples import matcher_pair_feeds, random_feeds, real_feeds
from edge_geoloc.export.sidecar import ModelDescription, build_sidecar, sidecar_path, write_sidecar
from edge_geoloc.export.wrappers import example_inputs, trace_hw, wrap_for_export
from torch import nn

from edge_geoloc.artifacts import package_versions, read_checkpoint_meta, sha256_file
from edge_geoloc.config import to_dict
from edge_geoloc.models.checkpoint import load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]


def state_dict_sha256(model: nn.Module) -> str:
    """Content hash of a model's weights (keys in sorted order, raw tensor bytes), independent of file format."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()


def export_checkpoint(checkpoint: str | Path, out_path: str | Path, cfg: ExportConfig | None = None) -> ExportResult:
    """Rebuild a checkpoint's model from the registry and export it (see :func:`export_model`)."""
    model, meta = load_model(checkpoint)
    return export_model(model, out_path, cfg, checkpoint=Path(checkpoint), preprocessing=meta.preprocessing,
                        model_config=meta.config)


def export_model(model: nn.Module, out_path: str | Path, cfg: ExportConfig | None = None, *,
                 checkpoint: Path | None = None, preprocessing: dict[str, Any] | None = None,
                 model_config: dict[str, Any] | None = None) -> ExportResult:
    """Export ``model`` to ``out_path`` (.onnx) with its sidecar; raises ParityError if the gate fails."""
    cfg = cfg or ExportConfig()
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"the output must be a .onnx file, got {out_path.name}")
    wrapper, desc = wrap_for_export(model.eval(), view=cfg.view, finest_only=cfg.finest_only,
                                    dynamic_batch=cfg.dynamic_batch, preprocessing=preprocessing,
                                    model_config=model_config)
    hashes = {"weights": state_dict_sha256(model)}
    if checkpoint is not None:
        hashes["checkpoint"] = sha256_file(checkpoint)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.stem}.") as tmp:
        staged = Path(tmp) / out_path.name
        simplifier = _torch_to_onnx(wrapper, desc, staged, cfg)
        sidecar = build_sidecar(desc, opset=cfg.opset, hashes=hashes, versions=package_versions(),
                                extra={"export": {**to_dict(cfg), "simplifier": simplifier},
                                       "source": _source(checkpoint)})
        write_sidecar(staged, sidecar)
        sidecar = _gate(wrapper, staged, cfg)
        shutil.move(str(staged), out_path)
        shutil.move(str(sidecar_path(staged)), sidecar_path(out_path))
    logger.info("exported %s (%s, opset %d) with sidecar %s", out_path, desc.kind, cfg.opset,
                sidecar_path(out_path).name)
    return ExportResult(out_path, sidecar_path(out_path), sidecar)


def _source(checkpoint: Path | None) -> dict[str, Any]:
    if checkpoint is None:
        return {"checkpoint": None}
    meta = read_checkpoint_meta(checkpoint)
    return {"checkpoint": checkpoint.name, "checkpoint_versions": meta.versions, "extra": meta.extra}


def _torch_to_onnx(wrapper: nn.Module, desc: ModelDescription, path: Path, cfg: ExportConfig) -> str | None:
    """Trace ``wrapper`` to ``path``; returns the simplifier used (None without one)."""
    import onnx

    names_in = [t.name for t in desc.inputs]
    names_out = [t.name for t in desc.outputs]
    example = example_inputs(desc.inputs, hw=trace_hw(desc.inputs, desc.preprocessing))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning / TracerWarnings
        torch.onnx.export(wrapper, example, str(path), input_names=names_in, output_names=names_out,
                          opset_version=cfg.opset, dynamic_axes=dynamic_axes(desc), do_constant_folding=True,
                          dynamo=False)
    model, tool = simplify_onnx(onnx.load(str(path))) if cfg.simplify else (onnx.load(str(path)), None)
    onnx.checker.check_model(model, full_check=True)
    _set_metadata(model, desc)
    onnx.save(model, str(path))
    return tool


def dynamic_axes(desc: ModelDescription) -> dict[str, dict[int, str]] | None:
    """``{tensor: {axis: symbolic name}}`` of every symbolic dim the description declares (None: all static)."""
    axes = {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in (*desc.inputs,
                                                                                         *desc.outputs)}
    return {name: dims for name, dims in axes.items() if dims} or None


def _set_metadata(model: Any, desc: ModelDescription) -> None:
    """Model name and kind as ONNX ``metadata_props`` too (tools such as Netron show them)."""
    for key, value in (("edge_geoloc.kind", desc.kind), ("edge_geoloc.model_name", desc.model_name)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def simplify_onnx(model: Any) -> tuple[Any, str | None]:
    """Simplify an ONNX ``ModelProto`` with onnxslim (preferred) or onnxsim; returns (model, tool used or None)."""
    if importlib.util.find_spec("onnxslim"):
        import onnxslim

        return onnxslim.slim(model), "onnxslim"
    if importlib.util.find_spec("onnxsim"):
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            return simplified, "onnxsim"
    logger.info("no onnxslim/onnxsim installed; exporting without graph simplification")
    return model, None


def _gate(wrapper: nn.Module, onnx_path: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Run the parity gate (and the TensorRT audit), store both in the sidecar and return it."""
    from edge_geoloc.export.sidecar import read_sidecar

    from edge_geoloc.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_geoloc.runtime.backends.torch_backend import TorchBackend

    sidecar = read_sidecar(onnx_path)  # verifies the hash once; the file does not change after this
    candidate = OnnxRuntimeBackend(onnx_path, num_threads=2, verify_hash=False)
    report = parity_report(TorchBackend(wrapper, sidecar), candidate, cfg.parity, cfg.dynamic_batch)
    if not report["passed"]:
        raise ParityError(f"ONNX export of {sidecar['model']['name']} failed the parity gate: "
                          f"{'; '.join(report['failures'])}. Nothing was written to the target path.", report)
    sidecar["parity"] = report
    if cfg.check_tensorrt:
        from edge_geoloc.export.trt_check import audit_onnx

        sidecar["tensorrt_audit"] = audit_onnx(onnx_path).to_dict()
    write_sidecar(onnx_path, sidecar, artifact_sha256=sidecar["sha256"]["artifact"])
    return sidecar


def parity_report(reference: Any, candidate: Any, cfg: ParityConfig, dynamic_batch: bool = False) -> dict[str, Any]:
    """Gate ``candidate`` against ``reference`` on random inputs (+ batch 2 if dynamic) and synthetic images; a
    map matcher at two input sizes (its frame and ``cfg.matcher_block_hw``), its task on (frame, map block)
    pairs."""
    sidecar = reference.sidecar
    matcher = sidecar["kind"] == "matcher"
    feeds = random_feeds(sidecar, cfg.random_samples, cfg.seed)
    if matcher:
        feeds += random_feeds(sidecar, cfg.random_samples, cfg.seed + 2, hw=cfg.matcher_block_hw)
    if dynamic_batch:
        feeds += random_feeds(sidecar, 1, cfg.seed + 1, batch=2)
    task_from = len(feeds)
    if matcher:
        feeds += matcher_pair_feeds(sidecar, cfg.real_samples, cfg.matcher_block_hw, cfg.seed)
    else:
        feeds += real_feeds(sidecar, cfg.real_samples, cfg.seed)
    report = run_parity(reference, candidate, feeds, cfg, task_from)
    report["config"] = dataclasses.asdict(cfg)
    return report
