"""``edge-geoloc eval localizer --checkpoint CKPT --data DIR [--format pairs|vigor|kitti] [--split ...]``.

Prints mean/median error and recall@1/3/5 m (plus lateral/longitudinal for pinhole cameras and the
orientation error for the unknown-orientation protocol) and writes them as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.evaluate.localization_metrics import evaluate_dataset
from edge_geoloc.models.checkpoint import load_model


def _dataset(args: argparse.Namespace, model: torch.nn.Module):
    common = dict(query_size=model.query_size, aerial_size=model.aerial_size, mean=model.mean, std=model.std)
    if args.format == "pairs":
        from edge_geoloc.data.pairs import dataset_for_model

        return dataset_for_model(args.data, model, read_ground_truth=True, align_north_up=not args.unknown_orientation)
    if args.format == "vigor":
        from edge_geoloc.data.vigor import VigorDataset

        return VigorDataset(args.data, args.split or "cross_area", False,
                            known_orientation=not args.unknown_orientation, **common)
    from edge_geoloc.data.kitti import KittiDataset

    return KittiDataset(args.data, args.split or "test1", **common)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-geoloc eval localizer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="pair dataset folder, or VIGOR/KITTI root")
    parser.add_argument("--format", choices=("pairs", "vigor", "kitti"), default="pairs")
    parser.add_argument("--split", help="vigor: same_area|cross_area; kitti: test1|test2")
    parser.add_argument("--unknown-orientation", action="store_true",
                        help="do not rotate queries north-up; also report the orientation error")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="write the metrics to this file")
    args = parser.parse_args(argv)
    model, _ = load_model(args.checkpoint, expected_kind="localizer")
    metrics = evaluate_dataset(model, _dataset(args, model), args.batch_size,
                               decompose=args.format == "kitti", orientation=args.unknown_orientation)
    for key, value in metrics.items():
        print(f"{key:28s} {value:.4g}")
    if args.json:
        atomic_write_json(Path(args.json), json.loads(json.dumps(metrics)))
    return 0
