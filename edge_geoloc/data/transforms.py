"""Augmentations of the Sample4Geo recipe, in numpy/OpenCV, driven by an explicit random generator.

Per view: JPEG re-compression (q 90-100, p .5), resize, colour jitter (brightness/contrast/saturation/hue
+-0.15, p .5), blur or sharpen (p .3), grid or coarse dropout (p .3); satellite only: a random multiple of
90 degrees; both views flipped together (p .5). Each sample draws from its own generator seeded by
``(seed, epoch, index)``, so results do not depend on workers, ranks or batch composition.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    flip_p: float = 0.5
    rotate_satellite: bool = True
    jpeg_p: float = 0.5
    color_p: float = 0.5
    color_strength: float = 0.15
    blur_p: float = 0.3
    dropout_p: float = 0.3


def to_tensor(image: np.ndarray, size_hw: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
              ) -> torch.Tensor:
    """Evaluation preprocessing: bilinear resize, scale to [0, 1], normalise; ``(H, W, 3) uint8 -> (3, h, w)``."""
    h, w = size_hw
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def jpeg_recompress(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    quality = int(rng.integers(90, 101))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) if ok else image


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation factors in ``1 +- strength``; hue shift in ``+- strength`` turns."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x = image.astype(np.float32) * b
    x = (x - x.mean()) * c + x.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + (x - grey) * s, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    shift = int(round(rng.uniform(-strength, strength) * 180))
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def blur_or_sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with sigma 0.3-1.5 px *at 384 px* (Sample4Geo's size), scaled to the image width, or a
    sharpening kernel."""
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.3, 1.5)) * image.shape[1] / 384.0
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma) if sigma >= 0.2 else image
    alpha = float(rng.uniform(0.2, 0.5))
    kernel = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32) * alpha
    kernel[1, 1] += 1.0 - alpha
    return cv2.filter2D(image, -1, kernel)


def dropout(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grid dropout (ratio 0.4) or 10-25 coarse holes of 10-20 % of the side, filled with zeros."""
    out = image.copy()
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        cell = max(2, int(min(h, w) * rng.uniform(0.1, 0.2)))
        hole = max(1, int(cell * 0.4))
        oy, ox = rng.integers(0, cell, size=2)
        for y in range(int(oy), h, cell):
            for x in range(int(ox), w, cell):
                out[y:y + hole, x:x + hole] = 0
        return out
    for _ in range(int(rng.integers(10, 26))):
        hh, ww = (np.array([h, w]) * rng.uniform(0.1, 0.2, size=2)).astype(int) + 1
        y, x = int(rng.integers(0, max(1, h - hh))), int(rng.integers(0, max(1, w - ww)))
        out[y:y + hh, x:x + ww] = 0
    return out


class PairTransform:
    """Training transform of one (drone, satellite) pair; with ``cfg.enabled=False`` only resize+normalise."""

    def __init__(self, cfg: AugmentConfig, size_hw: tuple[int, int], mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        self.cfg, self.size_hw, self.mean, self.std = cfg, size_hw, mean, std

    def __call__(self, drone: np.ndarray, sat: np.ndarray, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.enabled:
            if rng.random() < self.cfg.flip_p:
                drone, sat = drone[:, ::-1], sat[:, ::-1]
            drone, sat = self.view(drone, rng), self.view(sat, rng)
            if self.cfg.rotate_satellite:
                sat = np.rot90(sat, k=int(rng.integers(0, 4)))
        return (to_tensor(np.ascontiguousarray(drone), self.size_hw, self.mean, self.std),
                to_tensor(np.ascontiguousarray(sat), self.size_hw, self.mean, self.std))

    def view(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        image = np.ascontiguousarray(image)
        if rng.random() < c.jpeg_p:
            image = jpeg_recompress(image, rng)
        h, w = self.size_hw
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < c.color_p:
            image = color_jitter(image, c.color_strength, rng)
        if rng.random() < c.blur_p:
            image = blur_or_sharpen(image, rng)
        if rng.random() < c.dropout_p:
            image = dropout(image, rng)
        return image
