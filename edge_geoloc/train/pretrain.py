"""Synthetic pretraining of a retrieval backbone: the stand-in for ImageNet weights where none can be downloaded.

Geometry-supervised: the backbone learns to match flight-like drone frames (north-up and cut to the ground
footprint as on board, :mod:`edge_geoloc.data.poses`) with the map tiles under them, over many synthetic areas
whose styles are random variations of one base style (colours, sun, shadows, tint). The target style is never
seen, so "new style" figures stay honest. Training is the retrieval trainer's InfoNCE on an on-board tree
(:mod:`edge_geoloc.sim.onboard_tree`), so no second training loop exists.

Map and flight are rendered under independent random conditions
(:func:`edge_geoloc.sim.conditions.sample_condition`), never the built-in test conditions. The result is a
self-describing safetensors file: the backbone's weights plus metadata (format, timm backbone
name, its kwargs, input size, the pretraining config and the trainer's last loss); ``model.pretrained=PATH``
loads it, and a file for another backbone stops with an error naming the file. Files are cached under
``cache_dir`` by a hash of the config, so the demo, tests and benchmarks reuse one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_geoloc.config import to_dict
from edge_geoloc.models.backbone import PRETRAINED_FORMAT
from edge_geoloc.models.checkpoint import load_model
from edge_geoloc.sim.conditions import sample_condition
from edge_geoloc.sim.onboard_pairs import OnboardPairConfig
from edge_geoloc.sim.onboard_tree import write_onboard_tree
from edge_geoloc.sim.styles import Style, get_style
from edge_geoloc.train.map_matcher import (
    MatcherOptimConfig,
    MatcherRunConfig,
    MatcherTrainConfig,
    train_map_matcher,
)
from edge_geoloc.train.pretrain_config import (  # noqa: F401  (re-exported: the pretraining API)
    MODEL_DEFAULTS,
    ONBOARD_AUGMENT,
    PretrainConfig,
    cached_path,
    config_key,
    default_pretrain_config,
    tree_key,
)

log = logging.getLogger(__name__)
MATCHER_PRETRAINED = ("cspdh_matcher",)  # retrieval models whose backbone is the map matcher's feature network


def jittered_style(base: Style, rng: np.random.Generator, index: int) -> Style:
    """A variation of ``base``: palette colours +-30 levels, sun anywhere at 25-70 deg, shadows, tint +-10 %."""
    def colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in rgb)

    colours = {name: colour(getattr(base, name)) for name in ("ground_color", "grass_color", "road_color",
                                                              "paved_color", "water_color", "tree_color")}
    return dataclasses.replace(
        base, name=f"{base.name}_var{index}", roof_colors=tuple(colour(c) for c in base.roof_colors),
        facade_colors=tuple(colour(c) for c in base.facade_colors), sun_azimuth_deg=float(rng.uniform(0, 360)),
        sun_elevation_deg=float(rng.uniform(25, 70)), shadow_strength=float(rng.uniform(0.2, 0.6)),
        tint=tuple(float(t) for t in rng.uniform(0.9, 1.1, 3)), **colours)


def pretraining_areas(cfg: PretrainConfig) -> list:
    from edge_geoloc.sim.area import generate_area

    rng = np.random.default_rng([cfg.seed, 7])
    base = get_style(cfg.base_style)
    return [generate_area(jittered_style(base, rng, i), seed=10_000 + cfg.seed * 100 + i, size_m=cfg.area_size_m,
                          gsd_m=cfg.gsd_m, condition=sample_condition(rng, f"pretrain_map_{i}"))
            for i in range(cfg.n_areas)]


def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The (shared or drone) branch's timm backbone weights, keyed as ``Backbone.body`` expects them."""
    body = model.branch("drone").backbone.body
    return {k: v.detach().contiguous().cpu() for k, v in body.state_dict().items()}


def save_pretrained(path: Path, model: torch.nn.Module, cfg: PretrainConfig, summary: dict[str, Any]) -> Path:
    """A retrieval model's backbone as a pretrained-backbone file naming that backbone."""
    return write_pretrained(path, backbone_state(model), model.branch("drone").backbone.name, cfg, summary)


def write_pretrained(path: Path, state: dict[str, torch.Tensor], backbone: str, cfg: PretrainConfig,
                     summary: dict[str, Any]) -> Path:
    """Write (atomically) a self-describing pretrained-backbone safetensors: the metadata names ``backbone``, so
    loading it into another backbone is an error naming the file."""
    from safetensors.torch import save_file

    meta = {"format": PRETRAINED_FORMAT, "backbone": backbone, "model": cfg.model, "img_size": str(cfg.img_size),
            "config": json.dumps(to_dict(cfg)), "summary": json.dumps(summary)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def matcher_recipe(cfg: PretrainConfig) -> MatcherTrainConfig:
    """The map matcher's training config that pretraining ``cfg`` means (dense InfoNCE on endless on-board pairs
    from ``n_areas`` areas of ``base_style`` under random map and flight conditions)."""
    pairs = OnboardPairConfig(styles=(cfg.base_style,), n_areas=cfg.n_areas, area_size_m=cfg.area_size_m,
                              gsd_m=cfg.gsd_m)
    work = Path(cfg.cache_dir) / f"work-{config_key(cfg)}"
    return MatcherTrainConfig(pairs=pairs, optim=MatcherOptimConfig(lr=cfg.lr, batch_size=cfg.batch_size,
                                                                    steps=cfg.steps),
                              run=MatcherRunConfig(out_dir=str(work / "run"), seed=cfg.seed))


def adopt_matcher_run(checkpoint: Path, recipe: MatcherTrainConfig) -> torch.nn.Module:
    """A finished matcher checkpoint trained with exactly ``recipe`` (model, pairs, optimiser, seed; the output
    folder and validation may differ), so a matcher trained elsewhere (e.g. by ``retrieval_onboard.py``) fills
    the cache without training again; any other checkpoint is an error naming the file and what differs."""
    model, meta = load_model(checkpoint, expected_kind="matcher")
    want = json.loads(json.dumps(to_dict(recipe)))
    differs = [k for k in ("model", "model_kwargs", "pairs", "optim") if meta.config.get(k) != want[k]]
    if meta.config.get("run", {}).get("seed") != recipe.run.seed:
        differs.append("run.seed")
    if differs:
        raise ValueError(f"{checkpoint} was not trained with this pretraining recipe: {', '.join(differs)} differ")
    return model


def pretrain_matcher_backbone(cfg: PretrainConfig, path: Path, from_matcher: Path | None = None) -> Path:
    """Train the map matcher with :func:`matcher_recipe` (or adopt ``from_matcher``); its feature stages become
    the backbone of ``cspdh_matcher``."""
    recipe = matcher_recipe(cfg)
    if from_matcher is not None:
        matcher, source = adopt_matcher_run(Path(from_matcher), recipe), str(from_matcher)
    else:
        matcher, source = train_map_matcher(recipe), recipe.run.out_dir
    summary = {"steps": cfg.steps, "areas": cfg.n_areas, "recipe": "map matcher (dense InfoNCE, on-board pairs)",
               "matcher_checkpoint": source}
    return save_matcher_pretrained(path, matcher, cfg, summary)


def save_matcher_pretrained(path: Path, matcher: torch.nn.Module, cfg: PretrainConfig, summary: dict[str, Any]
                            ) -> Path:
    """The matcher's feature stages as a pretrained-backbone file naming backbone ``matcher.model_name``."""
    from edge_geoloc.models.map_matcher import matcher_backbone_state

    return write_pretrained(path, matcher_backbone_state(matcher), matcher.model_name, cfg, summary)


def pretrain_backbone(cfg: PretrainConfig, force: bool = False, from_matcher: Path | None = None) -> Path:
    """Pretrain (or reuse the cached result) and return the safetensors path. ``cspdh_matcher`` is pretrained
    with the map matcher's dense objective (``from_matcher``: a finished run of that recipe, adopted instead of
    training); every other model with the retrieval trainer's InfoNCE."""
    from edge_geoloc.train.losses_retrieval import CSDAConfig, HCDConfig, LossConfig, PALWConfig
    from edge_geoloc.train.retrieval_trainer import (
        OptimConfig,
        RetrievalDataConfig,
        RetrievalModelConfig,
        RetrievalTrainConfig,
        RetrievalTrainer,
        RunConfig,
    )

    path = cached_path(cfg)
    if path.is_file() and not force:
        log.info("reusing pretrained backbone %s", path)
        return path
    if cfg.model in MATCHER_PRETRAINED:
        return pretrain_matcher_backbone(cfg, path, from_matcher)
    if from_matcher is not None:
        raise ValueError(f"--from-matcher applies to {', '.join(MATCHER_PRETRAINED)}, not {cfg.model}")
    work = Path(cfg.cache_dir) / f"work-{config_key(cfg)}"
    tree = Path(cfg.cache_dir) / f"tree-{tree_key(cfg)}"
    if not (tree / "poses.csv").is_file():
        write_onboard_tree(tree, pretraining_areas(cfg), [], cfg.tree)
    train_cfg = RetrievalTrainConfig(
        data=RetrievalDataConfig(dataset="synthetic", root=str(tree), num_workers=0, protocol="onboard",
                                 augment=ONBOARD_AUGMENT),
        model=RetrievalModelConfig(name=cfg.model, img_size=cfg.img_size),
        loss=LossConfig(hcd=HCDConfig(enabled=False), palw=PALWConfig(enabled=False), csda=CSDAConfig(enabled=False)),
        optim=OptimConfig(lr=cfg.lr, batch_size=cfg.batch_size, epochs=10_000, max_steps=cfg.steps, amp=False),
        run=RunConfig(out_dir=str(work / "run"), seed=cfg.seed, device="cpu", eval_at_end=False, progress=False))
    trainer = RetrievalTrainer(train_cfg)
    result = trainer.fit()
    summary = {"steps": result["step"], "last_metric_loss": result["last_logs"].get("metric"),
               "areas": cfg.n_areas, "tiles": len(set(trainer.dataset.labels.tolist()))}
    return save_pretrained(path, trainer.model, cfg, summary)
