"""``edge-geoloc train localizer --config configs/localizer_synthetic.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import logging

import torch

from edge_geoloc.config import add_config_arguments, config_from_args
from edge_geoloc.train.localizer_trainer import LocalizerTrainConfig, build_model, fit

log = logging.getLogger(__name__)


def open_datasets(cfg: LocalizerTrainConfig, model: torch.nn.Module) -> tuple:
    """(train, validation or None) datasets for ``cfg.data.format``, sized for ``model``."""
    d = cfg.data
    common = dict(query_size=model.query_size, aerial_size=model.aerial_size, mean=model.mean, std=model.std)
    if d.format == "pairs":
        from edge_geoloc.data.pairs import dataset_for_model

        train = dataset_for_model(d.train, model, read_ground_truth=True, align_north_up=d.align_north_up)
        if not d.val:
            return train, None
        return train, dataset_for_model(d.val, model, read_ground_truth=True, align_north_up=d.align_north_up)
    if d.format == "vigor":
        from edge_geoloc.data.vigor import VigorDataset

        known = d.align_north_up
        return (VigorDataset(d.train, d.split, True, known_orientation=known, **common),
                VigorDataset(d.train, d.split, False, known_orientation=known, **common))
    if d.format == "kitti":
        from edge_geoloc.data.kitti import KittiDataset

        return KittiDataset(d.train, "train", **common), KittiDataset(d.train, d.split, **common)
    raise SystemExit(f"data.format must be pairs, vigor or kitti, got {d.format!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-geoloc train localizer", description=__doc__)
    add_config_arguments(parser, default_config=None)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = parser.parse_args(argv)
    cfg = config_from_args(LocalizerTrainConfig, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cfg.data.train:
        parser.error("set data.train (a pair dataset folder, or the VIGOR/KITTI root)")
    train, val = open_datasets(cfg, build_model(cfg.model))
    fit(cfg, train, val)
    print(f"checkpoints in {cfg.out_dir}: last.safetensors, best.safetensors")
    return 0
