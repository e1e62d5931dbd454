"""The run folder of the demo, by name: every artifact a step writes or reads has one path here.

``01_areas/{source,target}/``  the synthetic areas (``ortho.tif`` ...)
``02_train/``    ``retrieval/final.safetensors``, ``matcher/final.safetensors`` (when configured),
                 ``localizer/last.safetensors``, ``data/`` (training sets)
``03_export/``   ``retrieval.onnx``, ``matcher.onnx``, ``localizer.onnx`` (+ sidecars), ``index/`` (target tiles)
``04_fly/``      ``fieldlog/`` (MCAP), ``replay_teacher/`` (trajectory, errors), ``heatmaps_teacher.npz``
``05_adapt/``    ``adapt_dataset/``, ``adaptation/student.safetensors``, ``localizer_adapted.onnx``,
                 ``replay_adapted/``, ``heatmaps_adapted.npz``
``06_report/``   ``summary.json``, ``summary.txt``, PNGs, ``report.html``

A car's run (``steps_car``) uses the same names: its localizer is the BEV matcher (``02_train/matcher/``,
``03_export/matcher.onnx``), adapted into ``05_adapt/adaptation/student/`` and re-exported as
``localizer_adapted.onnx``; it has no source area, retrieval model or heat-map samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_geoloc.demo.runfolder import step_dir_name

# Step number -> folder name; the demo's steps are declared with these (``edge_geoloc.demo.steps``).
STEP_NAMES = {1: "areas", 2: "train", 3: "export", 4: "fly", 5: "adapt", 6: "report"}
AREA_ROLES = ("source", "target")


@dataclass(frozen=True)
class RunLayout:
    """Named paths inside one demo run folder."""

    run_dir: Path

    def step_dir(self, number: int) -> Path:
        return self.run_dir / step_dir_name(number, STEP_NAMES[number])

    # step 1: areas
    def area(self, role: str) -> Path:
        if role not in AREA_ROLES:
            raise ValueError(f"area role must be one of {AREA_ROLES}, got {role!r}")
        return self.step_dir(1) / role

    def ortho(self, role: str) -> Path:
        return self.area(role) / "ortho.tif"

    # step 2: train
    @property
    def retrieval_run(self) -> Path:
        return self.step_dir(2) / "retrieval"

    @property
    def retrieval_checkpoint(self) -> Path:
        return self.retrieval_run / "final.safetensors"

    @property
    def matcher_run(self) -> Path:
        return self.step_dir(2) / "matcher"

    @property
    def matcher_checkpoint(self) -> Path:
        return self.matcher_run / "final.safetensors"

    @property
    def localizer_run(self) -> Path:
        return self.step_dir(2) / "localizer"

    @property
    def localizer_checkpoint(self) -> Path:
        return self.localizer_run / "last.safetensors"

    # step 3: export
    @property
    def retrieval_onnx(self) -> Path:
        return self.step_dir(3) / "retrieval.onnx"

    @property
    def matcher_onnx(self) -> Path:
        return self.step_dir(3) / "matcher.onnx"

    @property
    def localizer_onnx(self) -> Path:
        return self.step_dir(3) / "localizer.onnx"

    @property
    def index_dir(self) -> Path:
        return self.step_dir(3) / "index"

    # step 4: fly with the teacher
    @property
    def fieldlog_dir(self) -> Path:
        return self.step_dir(4) / "fieldlog"

    @property
    def flight_dir(self) -> Path:
        return self.step_dir(4) / "data" / "flight"

    @property
    def teacher_replay(self) -> Path:
        return self.step_dir(4) / "replay_teacher"

    @property
    def teacher_heatmaps(self) -> Path:
        return self.step_dir(4) / "heatmaps_teacher.npz"

    # step 5: adapt and fly again
    @property
    def adapt_dataset(self) -> Path:
        return self.step_dir(5) / "adapt_dataset"

    @property
    def adaptation_dir(self) -> Path:
        return self.step_dir(5) / "adaptation"

    @property
    def student_checkpoint(self) -> Path:
        return self.adaptation_dir / "student.safetensors"

    @property
    def adapted_onnx(self) -> Path:
        return self.step_dir(5) / "localizer_adapted.onnx"

    @property
    def adapted_replay(self) -> Path:
        return self.step_dir(5) / "replay_adapted"

    @property
    def adapted_heatmaps(self) -> Path:
        return self.step_dir(5) / "heatmaps_adapted.npz"

    # step 6: report
    @property
    def report_dir(self) -> Path:
        return self.step_dir(6)

    @property
    def summary_txt(self) -> Path:
        return self.report_dir / "summary.txt"

    @property
    def report_html(self) -> Path:
        return self.report_dir / "report.html"
