"""Random photometric changes of a rendered view: lighting, white balance, gamma, blur and sensor noise."""

from __future__ import annotations

import cv2
import numpy as np

# Blur sigma as a fraction of the image width: 0.5-1.5 px at 512 px, the same optical blur at any resolution.
BLUR_SIGMA_FRACTION = (0.5 / 512, 1.5 / 512)


def random_photometric(image: np.ndarray, rng: np.random.Generator, blur_prob: float = 0.3,
                       max_noise_sigma: float = 6.0) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 image under other light and camera.

    Per channel ``c`` (values on a 0..1 scale): ``out = (gain * wb_c * in^gamma - 0.5) * contrast + 0.5``,
    applied as a lookup table; then, with probability ``blur_prob``, a Gaussian blur (defocus / motion) whose sigma
    is a fraction of the image width (:data:`BLUR_SIGMA_FRACTION`, so a 96 px view is not a blob), and
    Gaussian sensor noise of a random sigma up to ``max_noise_sigma`` grey levels.
    """
    gamma = rng.uniform(0.8, 1.25)
    gain = rng.uniform(0.75, 1.25)
    white_balance = rng.uniform(0.9, 1.1, 3)
    contrast = rng.uniform(0.8, 1.2)
    levels = np.arange(256) / 255.0
    lut = np.stack([((levels**gamma * gain * wb - 0.5) * contrast + 0.5) for wb in white_balance], -1)
    lut = np.clip(lut * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)
    out = cv2.LUT(np.ascontiguousarray(image), lut)
    if rng.random() < blur_prob:
        sigma_px = rng.uniform(*BLUR_SIGMA_FRACTION) * image.shape[1]
        if sigma_px >= 0.3:  # below that a 3-tap kernel is almost the identity
            out = cv2.GaussianBlur(out, (0, 0), sigma_px)
    sigma = rng.uniform(0, max_noise_sigma)
    noise = rng.standard_normal(out.shape, dtype=np.float32) * sigma
    return np.clip(out + noise, 0, 255).astype(np.uint8)
