"""``edge-geoloc dataset from-logs LOGS... --out DIR``: field logs -> the adaptation pair dataset."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-geoloc dataset", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("from-logs", help="query frame + aerial patch around the coarse fix, per logged frame")
    p.add_argument("logs", nargs="+", type=Path, help="field log folders (or bag folders / .mcap files)")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder (must not hold a dataset)")
    p.add_argument("--ortho", type=Path, help="GeoTIFF to cut aerial patches from (default: the one the logs name)")
    p.add_argument("--aerial-size-m", type=float, help="patch side in metres (default: from the logs)")
    p.add_argument("--aerial-px", type=int, help="patch side in pixels (default: from the logs)")
    p.add_argument("--query-kind", default="drone", choices=["drone", "ground_pano", "ground_pinhole"])
    p.add_argument("--coarse", default="auto", choices=["auto", "patch_ref", "gnss"],
                   help="coarse position: the logged patch reference, the GNSS track, or the first available")
    p.add_argument("--max-gnss-gap-s", type=float, default=1.0, help="farthest GNSS fix used for a frame")
    p.add_argument("--max-heading-gap-s", type=float, default=0.5, help="farthest heading used for a frame")
    p.add_argument("--max-altitude-gap-s", type=float, default=1.0,
                   help="farthest /altitude_agl used for a frame (linear between the two around it)")
    p.add_argument("--hfov-deg", type=float,
                   help="camera horizontal field of view for every sample (default: from /camera/camera_info)")
    p.add_argument("--min-valid-fraction", type=float, default=0.9, help="skip patches mostly off the map")
    p.add_argument("--every-n", type=int, default=1, help="keep every n-th logged frame")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from edge_geoloc.fieldlog.dataset import LogDatasetError, build_pairs_from_logs

    try:
        report = build_pairs_from_logs(
            args.logs, args.out, ortho=args.ortho, aerial_size_m=args.aerial_size_m, aerial_px=args.aerial_px,
            query_kind=args.query_kind, max_gnss_gap_s=args.max_gnss_gap_s, max_heading_gap_s=args.max_heading_gap_s,
            min_valid_fraction=args.min_valid_fraction, every_n=args.every_n, coarse=args.coarse,
            max_altitude_gap_s=args.max_altitude_gap_s, hfov_deg=args.hfov_deg)
    except (LogDatasetError, FileNotFoundError) as err:
        print(f"edge-geoloc dataset from-logs: {err}", file=sys.stderr)
        return 2
    for key, value in asdict(report).items():
        print(f"{key:>20}: {value}")
    print(f"wrote {args.out}")
    return 0
