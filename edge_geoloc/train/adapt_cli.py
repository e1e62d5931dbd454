"""``edge-geoloc adapt --teacher CKPT --target DIR --out DIR [--validation DIR] [key=value ...]``.

Adapts a localizer to a new area from unlabeled query/aerial pairs (coarse positions only); the target's
ground-truth fields, if any, are never read. ``--validation`` (a labelled pair dataset of the same area) is
optional and only reports teacher vs student errors after the fact.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.config import add_config_arguments, config_from_args, save_config
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.train.adaptation import AdaptConfig, adapt, open_target, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-geoloc adapt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="localizer checkpoint trained in another area")
    parser.add_argument("--target", required=True, help="pair dataset folder of the new area (no labels needed)")
    parser.add_argument("--out", required=True, help="output folder: student.safetensors, report.json, ...")
    parser.add_argument("--validation", help="optional labelled pair dataset of the new area")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(AdaptConfig, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher, _ = load_model(args.teacher, expected_kind="localizer")
    out = Path(args.out)
    save_config(cfg, out / "config.yaml")
    result = adapt(teacher, open_target(args.target, teacher, cfg), cfg, out)
    report = result.report
    if args.validation:
        report["validation"] = validate({"teacher": teacher, "student": result.student}, args.validation, cfg)
        atomic_write_json(out / "report.json", json.loads(json.dumps(report, default=str)))
    print(f"kept {report['kept']}/{report['samples']} samples; teacher-student median shift "
          f"{report['teacher_vs_student']['median_m']:.2f} m; student: {out / 'student.safetensors'}")
    for name, metrics in report.get("validation", {}).items():
        print(f"  {name:8s} mean {metrics['mean_m']:.2f} m  median {metrics['median_m']:.2f} m")
    return 0
