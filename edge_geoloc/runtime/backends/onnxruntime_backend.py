"""ONNX Runtime backend: CPU everywhere, CUDA where ``onnxruntime-gpu`` and a GPU are present."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_geoloc.artifacts import ArtifactError
from edge_geoloc.export.sidecar import read_sidecar
from edge_geoloc.runtime.backends.base import Backend

logger = logging.getLogger(__name__)


def ort_providers(device: str) -> list[str]:
    """Execution providers for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), falling back to CPU with a log."""
    import onnxruntime as ort

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    logger.warning("device %r asked for, but this onnxruntime has no CUDAExecutionProvider (install "
                   "onnxruntime-gpu); running on the CPU", device)
    return ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """An ONNX file + its sidecar, run by ``onnxruntime.InferenceSession``.

    ``num_threads``: intra-op threads (ORT's default: one per core); ``spin``: let idle worker threads
    busy-wait (ORT's default; off here so the rest of the process keeps its CPU).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", num_threads: int | None = None,
                 verify_hash: bool = True, spin: bool = False) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        super().__init__(read_sidecar(self.path, verify_hash=verify_hash))
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        options.log_severity_level = 3
        # ORT's worker threads busy-wait after each call by default: a little faster back to back, but it
        # steals the CPU from everything else on board (camera, ROS, fusion; PyTorch in a benchmark).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=ort_providers(device))
        except Exception as err:  # onnxruntime raises InvalidProtobuf / Fail / InvalidGraph
            raise ArtifactError(f"{self.path} is not a loadable ONNX model ({type(err).__name__}: {err}); "
                                "re-export it with `edge-geoloc export`") from err
        self._check_graph_io()
        self.providers = self.session.get_providers()

    def _check_graph_io(self) -> None:
        graph_in = [i.name for i in self.session.get_inputs()]
        graph_out = [o.name for o in self.session.get_outputs()]
        if sorted(graph_in) != sorted(self.input_names) or not set(self.output_names) <= set(graph_out):
            raise ArtifactError(f"{self.path}: the graph's inputs {graph_in} / outputs {graph_out} differ from its "
                                f"sidecar's ({self.input_names} / {self.output_names}); re-export the model")

    def _release(self) -> None:
        del self.session  # the InferenceSession frees its arena (and CUDA memory) when dropped

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values, strict=True))
