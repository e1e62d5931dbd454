"""Dataset readers (University-1652, SUES-200, the synthetic tree), sampler and augmentations."""

from edge_geoloc.data.images import UnreadableImageError, list_images, read_image_rgb
from edge_geoloc.data.sues200 import SUES200, split_sues200
from edge_geoloc.data.university import DatasetLayoutError, LabeledImages, TrainPair, University1652

__all__ = ["SUES200", "DatasetLayoutError", "LabeledImages", "TrainPair", "University1652",
           "UnreadableImageError", "list_images", "read_image_rgb", "split_sues200"]
