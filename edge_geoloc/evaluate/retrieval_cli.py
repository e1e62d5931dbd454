"""``edge-geoloc eval retrieval --checkpoint RUN/final.safetensors --dataset university1652 --root DIR``.

Prints R@1/5/10, R@1% and AP for both directions (drone->satellite, satellite->drone) under both gallery
protocols (``distractors``: every gallery image ranked; ``junk_filtered``: locations without a query removed,
as in Sample4Geo's code), optionally multi-view drone queries, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_geoloc.artifacts import ArtifactError
from edge_geoloc.data.folders import CROSS_VIEW_DATASETS, open_cross_view_folders
from edge_geoloc.evaluate.retrieval_metrics import evaluate_folders
from edge_geoloc.models.checkpoint import load_model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-geoloc eval retrieval", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="retrieval checkpoint (.safetensors)")
    p.add_argument("--dataset", default="university1652", choices=CROSS_VIEW_DATASETS)
    p.add_argument("--root", required=True, help="dataset root (University-1652 layout or split SUES-200)")
    p.add_argument("--altitude", type=int, default=150, help="SUES-200 height in metres (150/200/250/300)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--multi-view", action="store_true", help="also fuse all drone views of a location")
    p.add_argument("--output", type=Path, help="write the results as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, _ = load_model(args.checkpoint, expected_kind="retrieval")
    except ArtifactError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model.to(args.device)
    folders = open_cross_view_folders(args.dataset, args.root, args.altitude)
    results = evaluate_folders(model, folders, args.batch_size, args.device, args.multi_view)
    for key, m in results.items():
        print(f"{key:45s} R@1 {m['recall_at_1']:6.2f}  R@5 {m['recall_at_5']:6.2f}  R@10 {m['recall_at_10']:6.2f}  "
              f"R@1% {m['recall_at_1pct']:6.2f}  AP {m['ap']:6.2f}  (Q={m['num_queries']}, G={m['num_gallery']})")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
