"""``edge-geoloc fieldlog recover LOG...``: make the parts of crashed field logs complete rosbag2 bags again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_geoloc.fieldlog.reader import recover_in_place


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-geoloc fieldlog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("recover", help="rewrite every cut part (no MCAP footer) with its index and metadata.yaml")
    p.add_argument("logs", nargs="+", type=Path, help="field log folders, bag part folders or .mcap files")
    p.add_argument("--delete-cut", action="store_true", help="do not keep the cut originals as PART.mcap.cut")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    recovered = 0
    for log in args.logs:
        try:
            reports = recover_in_place(log, keep_cut=not args.delete_cut)
        except (FileNotFoundError, OSError) as err:
            print(f"edge-geoloc fieldlog recover: {err}", file=sys.stderr)
            return 2
        for report in reports:
            print(f"recovered {report.output}: {report.messages} messages")
        recovered += len(reports)
    print(f"{recovered} part(s) recovered; the others were complete")
    return 0
