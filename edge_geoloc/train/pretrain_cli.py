"""``edge-geoloc pretrain [--config YAML] [key=value ...] [--force]``: pretrain a retrieval backbone on the
synthetic world and print the cached safetensors path (use it as ``model.pretrained=PATH``)."""

from __future__ import annotations

import argparse
import sys

from edge_geoloc.config import ConfigError, add_config_arguments, config_from_args


def main(argv: list[str] | None = None) -> int:
    from edge_geoloc.train.pretrain import PretrainConfig, pretrain_backbone

    parser = argparse.ArgumentParser(prog="edge-geoloc pretrain", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--force", action="store_true", help="pretrain again even if a cached file exists")
    parser.add_argument("--from-matcher", help="model=cspdh_matcher: adopt this finished map matcher checkpoint "
                        "(trained with the same recipe) instead of training")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(PretrainConfig, args)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    try:
        print(pretrain_backbone(cfg, force=args.force, from_matcher=args.from_matcher))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
