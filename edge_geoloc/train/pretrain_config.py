"""What identifies a synthetic pretraining run and where its cached weights live (no trainer imported here, so
the retrieval trainer can find the cached backbone without depending on the pretraining recipe)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_geoloc.config import to_dict
from edge_geoloc.data.transforms import AugmentConfig
from edge_geoloc.sim.onboard_tree import OnboardTreeConfig


@dataclass(frozen=True)
class PretrainConfig:
    model: str = "cspdh_regnetx_002"  # registered retrieval model whose backbone is pretrained
    img_size: int = 64
    base_style: str = "source"
    n_areas: int = 8
    area_size_m: float = 480.0
    gsd_m: float = 1.0
    tree: OnboardTreeConfig = field(default_factory=lambda: OnboardTreeConfig(
        views_per_tile=2, drone_px=96, tile_px=64, photometric=True, flight_condition="random"))
    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    cache_dir: str = "runs/pretrained"


# Per-model defaults over PretrainConfig's: the map matcher backbone follows the matcher's own recipe
# (docs/map_matcher.md: 40 areas, 300 steps of 32 pairs), so its cache can be filled from such a matcher run.
MODEL_DEFAULTS = {"cspdh_matcher": {"n_areas": 40, "steps": 300, "seed": 1}}


def default_pretrain_config(model: str) -> PretrainConfig:
    """The pretraining config ``model.pretrained=synthetic`` and the benchmarks use for ``model``."""
    return PretrainConfig(model=model, **MODEL_DEFAULTS.get(model, {}))


# colour only: at 64 px the paper recipe's dropout and blur keep a from-scratch net at ln(B) for 150+ steps
ONBOARD_AUGMENT = AugmentConfig(rotate_satellite=False, dropout_p=0.0, blur_p=0.0, jpeg_p=0.2)


def config_key(cfg: PretrainConfig) -> str:
    """12 hex digits identifying a pretraining config (the cache key; ``cache_dir`` does not count)."""
    data = {k: v for k, v in to_dict(cfg).items() if k != "cache_dir"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def tree_key(cfg: PretrainConfig) -> str:
    """12 hex digits identifying the pretraining data (areas, styles, frames), reused across training settings."""
    data = {k: v for k, v in to_dict(cfg).items() if k in ("base_style", "n_areas", "area_size_m", "gsd_m", "tree",
                                                           "seed")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def cached_path(cfg: PretrainConfig) -> Path:
    return Path(cfg.cache_dir) / f"{cfg.model}-{config_key(cfg)}.safetensors"
