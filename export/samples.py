"""Inputs for the parity gate and for calibration when no folder is given.

"Random" inputs are standard-normal tensors. "Real" inputs are images of the synthetic world
(``edge_geoloc.sim``: orthophoto patches around random points, a smaller patch as the drone/query view),
preprocessed exactly as the runtime would with the sidecar; if the synthetic world cannot be imported, smooth
multi-scale noise textures stand in (logged). A map matcher's "real" inputs come in (frame, map block) pairs: a
block of the map at the matcher's resolution and a frame cut out of it, neither resized (the runtime does not
resize matcher inputs either).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from edge_geoloc.export.sidecar import input_preprocessing, input_shape, tensor_specs

logger = logging.getLogger(__name__)


def random_feeds(sidecar: Mapping[str, Any], count: int, seed: int = 0, batch: int = 1,
                 hw: tuple[int, int] | None = None) -> list[dict[str, np.ndarray]]:
    """``count`` dicts of standard-normal float32 inputs of the sidecar's shapes (an input of dynamic size at
    ``hw``, by default the size its preprocessing records)."""
    rng = np.random.default_rng(seed)
    specs = tensor_specs(sidecar, "inputs")
    shapes = [t.concrete_shape(batch, hw) if hw is not None and t.dynamic_hw else input_shape(sidecar, t, batch)
              for t in specs]
    return [{t.name: rng.standard_normal(shape).astype(np.float32) for t, shape in zip(specs, shapes, strict=True)}
            for _ in range(count)]


def matcher_pair_feeds(sidecar: Mapping[str, Any], count: int, block_hw: tuple[int, int],
                       seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``2 * count`` feeds of a map matcher: frame, then the map block it was cut from, for each pair."""
    from edge_geoloc.runtime.backends.base import normalise_image

    prep = input_preprocessing(sidecar, "image")
    frame_h, frame_w = prep.size_hw
    block_h, block_w = block_hw
    stride = prep.stride or 1
    if block_h < frame_h or block_w < frame_w or block_h % stride or block_w % stride:
        raise ValueError(f"the matcher's parity block {tuple(block_hw)} must be at least its frame {prep.size_hw} "
                         f"and a multiple of its stride {stride}")
    rng = np.random.default_rng(seed + 2)
    feeds = []
    for _, aerial in synthetic_pairs(count, seed, px=max(block_hw)):
        block = aerial[:block_h, :block_w]
        row, col = int(rng.integers(block_h - frame_h + 1)), int(rng.integers(block_w - frame_w + 1))
        frame = block[row:row + frame_h, col:col + frame_w]
        feeds += [{"image": normalise_image(frame, prep)}, {"image": normalise_image(block, prep)}]
    return feeds


def real_feeds(sidecar: Mapping[str, Any], count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``count`` batch-1 input dicts from synthetic images, preprocessed from the sidecar."""
    from edge_geoloc.runtime.backends.base import preprocess_image

    feeds = []
    for i, (query, aerial) in enumerate(synthetic_pairs(count, seed)):
        images = {"image": query if i % 2 == 0 else aerial, "query": query, "aerial": aerial}
        feeds.append({t.name: preprocess_image(images[t.name], input_preprocessing(sidecar, t.name))
                      for t in tensor_specs(sidecar, "inputs")})
    return feeds


def synthetic_pairs(count: int, seed: int = 0, px: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (query, aerial) ``(px, px, 3) uint8`` pairs: a close-up view and the patch around it."""
    area = _synthetic_area(seed)
    rng = np.random.default_rng(seed + 1)
    if area is None:
        return [(_noise_texture(rng, px), _noise_texture(rng, px)) for _ in range(count)]
    half = 0.3 * area.size_m
    pairs = []
    for _ in range(count):
        east, north = rng.uniform(-half, half, size=2)
        aerial, _ = area.aerial_patch(east, north, 0.25 * area.size_m, px)
        query, _ = area.aerial_patch(east + rng.uniform(-10, 10), north + rng.uniform(-10, 10),
                                     0.1 * area.size_m, px)
        pairs.append((np.asarray(query, np.uint8), np.asarray(aerial, np.uint8)))
    return pairs


@functools.lru_cache(maxsize=4)
def _synthetic_area(seed: int) -> Any:
    try:
        from edge_geoloc.sim import generate_area

        return generate_area("source", seed=seed, size_m=400.0, gsd_m=1.0)
    except Exception as err:  # the synthetic world is another component; parity must not depend on it
        logger.warning("synthetic world unavailable (%s: %s); using noise textures as real inputs",
                       type(err).__name__, err)
        return None


def _noise_texture(rng: np.random.Generator, px: int) -> np.ndarray:
    """Sum of upsampled random grids at several scales: smooth, image-like statistics."""
    import cv2

    image = np.zeros((px, px, 3), np.float32)
    for cells, weight in ((4, 0.5), (16, 0.3), (64, 0.2)):
        grid = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
        image += weight * cv2.resize(grid, (px, px), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)
