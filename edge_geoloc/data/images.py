"""Safe image reading shared by the dataset readers: RGB uint8 arrays, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class UnreadableImageError(OSError):
    """An image file exists but cannot be decoded (truncated, corrupt, not an image)."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p) and not p.name.startswith("."))


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` RGB; grey and RGBA images are converted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UnreadableImageError(f"cannot decode image {path} ({data.size} bytes); re-export or delete it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
