"""``edge-geoloc train retrieval --config configs/cspdh_synthetic.yaml [key=value ...]``.

Single process, or several with ``torchrun --nproc_per_node N -m edge_geoloc.train.retrieval_cli ...``
(multi-node: add torchrun's ``--nnodes/--node_rank/--rdzv_endpoint``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge_geoloc.config import ConfigError, add_config_arguments, config_from_args


def main(argv: list[str] | None = None) -> int:
    from edge_geoloc.train.distributed import cleanup_distributed
    from edge_geoloc.train.retrieval_trainer import RetrievalTrainConfig, train_retrieval

    parser = argparse.ArgumentParser(prog="edge-geoloc train retrieval", description=__doc__.split("\n")[0])
    add_config_arguments(parser, default_config="configs/cspdh_synthetic.yaml")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(RetrievalTrainConfig, args)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    try:
        summary = train_retrieval(cfg)
    finally:
        cleanup_distributed()
    for key, metrics in summary.get("eval", {}).items():
        print(f"{key:45s} R@1 {metrics['recall_at_1']:6.2f}  R@5 {metrics['recall_at_5']:6.2f}  "
              f"AP {metrics['ap']:6.2f}")
    print(json.dumps({"out_dir": str(cfg.run.out_dir), "step": summary["step"]}))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
