"""Query alignment at run time: the same rotation / scale cut the localizer (and, under the on-board protocol, the
retrieval encoder: ``preprocessing.image``) was trained with.

A localizer artifact declares in its preprocessing (``preprocessing.query``) how queries were prepared:
``alignment: "north_up"`` (rotate by the camera heading with ``edge_geoloc.geo.view_alignment.align_query_north_up``)
and, for scale-aligned models, ``ground_size_m`` (cut that many metres of ground around the nadir point with
``align_query_scale``, from the height above ground and the camera's horizontal field of view). The runtime
reads the declaration once (:meth:`QueryAlignment.from_sidecar`) and applies it to every camera frame
(:func:`align_query`); frames without the sensors it needs get no visual fix.

Ground cameras (cars): the model's ``query_kind`` says which camera it was trained on. A panorama must be
equirectangular (width = 2 x height, ``PANORAMA_ASPECT_TOLERANCE``), else the frame is skipped
(``bad_panorama_aspect``); a pinhole frame needs its intrinsics (the camera_info's horizontal field of view,
``camera.hfov_deg``), else it is skipped (``missing_camera_info``). A pinhole image cannot be rotated
north-up, so an artifact declaring a north-up pinhole query is refused at load time; a panorama model (the
car's learned BEV matcher) reads a pinhole frame through its wedge of a panorama (``pinhole_pano_wh``), which
can be rolled north-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale, pinhole_to_panorama
from edge_geoloc.types import CameraFrame

CAMERA_KINDS = {"nadir": "drone", "panorama": "ground_pano", "pinhole": "ground_pinhole"}  # sidecar -> model
PANORAMA_ASPECT_TOLERANCE = 0.05  # |width / height - 2| above this is not an equirectangular panorama


class FrameRejectedError(ValueError):
    """The frame cannot be localized by this artifact; ``counter`` names the pipeline counter it is counted in."""

    def __init__(self, counter: str, message: str) -> None:
        super().__init__(message)
        self.counter = counter  # name of the pipeline counter (``missing_heading``, ``bad_panorama_aspect``...)


class MissingSensorError(FrameRejectedError):
    """The artifact needs a measurement (heading, height above ground, field of view) the frame lacks."""


@dataclass(frozen=True)
class QueryAlignment:
    """What the localizer expects done to a camera frame before its own preprocessing."""

    north_up: bool = False
    ground_size_m: float | None = None  # scale alignment: metres of ground the query covers
    out_px: int = 0  # side of the scale-aligned query (the model's query height)
    query_kind: str = "drone"
    # a panorama model reading a front pinhole camera: each frame is resampled into its wedge of an equirectangular
    # panorama of this (width, height) (``pinhole_to_panorama``), then handled as a panorama (north-up roll)
    pinhole_pano_wh: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.pinhole_pano_wh is not None and self.query_kind != "ground_pinhole":
            raise ValueError(f"pinhole_pano_wh is for pinhole frames, got query_kind {self.query_kind!r}")

    @property
    def needs_heading(self) -> bool:
        return self.north_up

    @property
    def needs_altitude(self) -> bool:
        return self.ground_size_m is not None

    @classmethod
    def from_sidecar(cls, sidecar: Mapping[str, Any], input_name: str = "query") -> QueryAlignment:
        """Read ``preprocessing.<input_name>`` of a sidecar (or checkpoint): ``query`` of a localizer, ``image`` of
        a retrieval encoder (the on-board protocol); unknown alignments fail fast."""
        query = sidecar.get("preprocessing", {}).get(input_name, {})
        alignment = query.get("alignment") or "none"
        if alignment not in ("none", "north_up"):
            raise ValueError(f"{sidecar.get('kind', 'model')} artifact declares query alignment {alignment!r}; this "
                             "runtime knows 'none' and 'north_up': update edge_geoloc or re-export the model")
        ground = query.get("ground_size_m")
        kind = _query_kind(sidecar)
        if kind == "ground_pinhole" and alignment == "north_up":
            raise ValueError("localizer artifact declares north-up pinhole queries, which cannot be made: a "
                             "pinhole (front camera) model must use alignment 'none' with orientation bins")
        return cls(alignment == "north_up", float(ground) if ground else None, int(query["size_hw"][0]) if ground
                   else 0, kind)


def align_query(frame: CameraFrame, alignment: QueryAlignment, hfov_deg: float) -> np.ndarray:
    """The frame's image as the localizer was trained to see it: a pinhole frame put into its wedge of a panorama
    (``pinhole_pano_wh``), rotated north-up by ``frame.heading_rad``, then cut to ``ground_size_m`` around the
    nadir point from ``frame.altitude_agl_m`` and ``hfov_deg``.

    Raises :class:`MissingSensorError` when a needed measurement is missing (``None``/NaN/not positive)."""
    image, kind = frame.image_rgb, alignment.query_kind
    check_ground_frame(image, kind, hfov_deg)
    if alignment.pinhole_pano_wh is not None:
        image, kind = pinhole_to_panorama(image, hfov_deg, alignment.pinhole_pano_wh), "ground_pano"
    if alignment.needs_heading:
        if not _finite(frame.heading_rad):
            raise MissingSensorError("missing_heading", "the localizer expects north-up queries but the frame has "
                                     "no heading_rad (fill CameraFrame.heading_rad from the compass/IMU)")
        image = align_query_north_up(image, float(frame.heading_rad), kind)
    if alignment.needs_altitude:
        if not (_finite(frame.altitude_agl_m) and frame.altitude_agl_m > 0):
            raise MissingSensorError("missing_altitude", "the localizer expects scale-aligned queries but the "
                                     "frame has no altitude_agl_m (fill it from the baro/lidar height above ground)")
        if not 0 < hfov_deg < 180:
            raise MissingSensorError("missing_hfov", "the localizer expects scale-aligned queries: set the "
                                     "camera's horizontal field of view (runtime config camera.hfov_deg)")
        image = align_query_scale(image, float(frame.altitude_agl_m), hfov_deg, alignment.ground_size_m,
                                  alignment.out_px)
    return image


def _query_kind(sidecar: Mapping[str, Any]) -> str:
    """The model's query kind from the sidecar's ``preprocessing.query.camera`` (older artifacts: the model's
    ``query_kind`` argument, else a drone view)."""
    camera = sidecar.get("preprocessing", {}).get("query", {}).get("camera")
    if camera is None:
        return sidecar.get("model", {}).get("kwargs", {}).get("query_kind", "drone")
    if camera not in CAMERA_KINDS:
        raise ValueError(f"localizer artifact declares query camera {camera!r}; this runtime knows "
                         f"{sorted(CAMERA_KINDS)}: update edge_geoloc or re-export the model")
    return CAMERA_KINDS[camera]


def check_ground_frame(image: np.ndarray, query_kind: str, hfov_deg: float) -> None:
    """Raise :class:`FrameRejectedError` when a ground camera's frame does not fit the model's camera kind."""
    if query_kind == "ground_pano":
        h, w = image.shape[:2]
        if abs(w / h - 2.0) > PANORAMA_ASPECT_TOLERANCE:
            raise FrameRejectedError("bad_panorama_aspect", f"the localizer expects equirectangular panoramas "
                                     f"(width = 2 x height) but got {w}x{h}: stitch/crop the 360 deg image, or "
                                     "use a pinhole model for a front camera")
    elif query_kind == "ground_pinhole" and not 0 < hfov_deg < 180:
        raise MissingSensorError("missing_camera_info", "the localizer expects a calibrated pinhole camera: give "
                                 "its camera_info (runtime config camera.hfov_deg, or the node's camera_info topic)")


def _finite(value: float | None) -> bool:
    return value is not None and bool(np.isfinite(value))
