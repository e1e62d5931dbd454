"""Random photometric changes of a rendered view: lighting, white balance, gamma, blur and sensor noise."""

from __future__ import annotations

import cv2
import numpy as np


def random_photometric(image: np.ndarray, rng: np.random.Generator, blur_prob: float = 0.3,
                       max_noise_sigma: float = 6.0) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 image under other light and camera: ``out = gain * wb * in^gamma`` (0..1
    scale), optional Gaussian blur (defocus / motion) and Gaussian noise of random sigma."""
    x = image.astype(np.float32) / 255.0
    gamma = rng.uniform(0.8, 1.25)
    gain = rng.uniform(0.75, 1.25)
    white_balance = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    contrast = rng.uniform(0.8, 1.2)
    x = np.power(x, gamma) * gain * white_balance
    x = (x - x.mean()) * contrast + x.mean()
    if rng.random() < blur_prob:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    x = x * 255.0 + rng.normal(0.0, rng.uniform(0, max_noise_sigma), x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)
