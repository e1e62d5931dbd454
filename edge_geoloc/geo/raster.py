"""Geo-referenced raster windows: read a patch of a GeoTIFF/COG around a lat/lon, map pixel <-> lat/lon.

Pixel convention everywhere in the SDK: continuous ``(row, col)`` with ``(0, 0)`` at the upper-left *corner*
of the upper-left pixel, so the centre of pixel ``[i, j]`` is ``(i + 0.5, j + 0.5)`` (rasterio's affine
convention). Patches are north-up in the raster's projected CRS (UTM for the synthetic world).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

from edge_geoloc.geo.geodesy import _transformer, check_latlon


class RasterError(ValueError):
    """A raster is missing, unreadable, not geo-referenced, or a window falls outside it."""


@dataclass(frozen=True)
class PatchGeoref:
    """Where a north-up image patch lies: affine from (col, row) to projected CRS coordinates.

    ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` (rasterio's Affine order).
    """

    crs_epsg: int
    affine: tuple[float, float, float, float, float, float]
    height_px: int
    width_px: int

    @property
    def m_per_px(self) -> float:
        a, b, _, d, e, _ = self.affine
        return math.sqrt(abs(a * e - b * d))

    def pixel_to_crs(self, row, col):
        a, b, c, d, e, f = self.affine
        row, col = np.asarray(row, dtype=np.float64), np.asarray(col, dtype=np.float64)
        return a * col + b * row + c, d * col + e * row + f

    def crs_to_pixel(self, x, y):
        a, b, c, d, e, f = self.affine
        det = a * e - b * d
        dx, dy = np.asarray(x, dtype=np.float64) - c, np.asarray(y, dtype=np.float64) - f
        return (a * dy - d * dx) / det, (e * dx - b * dy) / det

    def pixel_to_latlon(self, row, col):
        """(lat_deg, lon_deg) of continuous pixel coordinates (corner convention, see module doc)."""
        x, y = self.pixel_to_crs(row, col)
        lon, lat = _transformer(self.crs_epsg, 4326).transform(x, y)
        return _float_or_array(lat), _float_or_array(lon)

    def latlon_to_pixel(self, lat_deg, lon_deg):
        """Continuous (row, col) of WGS84 points in this patch."""
        x, y = _transformer(4326, self.crs_epsg).transform(np.asarray(lon_deg), np.asarray(lat_deg))
        row, col = self.crs_to_pixel(x, y)
        return _float_or_array(row), _float_or_array(col)

    def resized(self, height_px: int, width_px: int) -> PatchGeoref:
        """The same ground footprint sampled at another pixel size."""
        sy, sx = self.height_px / height_px, self.width_px / width_px
        a, b, c, d, e, f = self.affine
        return PatchGeoref(self.crs_epsg, (a * sx, b * sy, c, d * sx, e * sy, f), height_px, width_px)


def _float_or_array(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


@dataclass(frozen=True)
class Patch:
    """An RGB patch read from a raster, its geo-reference and the fraction of it inside the raster."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    georef: PatchGeoref
    valid_fraction: float


class GeoRaster:
    """A read-only geo-referenced RGB raster (GeoTIFF or COG) with windowed reads.

    Use as a context manager or call :meth:`close`. Only the window asked for is read from disk.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RasterError(f"raster not found: {self.path}")
        try:
            self._ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as err:
            raise RasterError(f"cannot read raster {self.path}: {err}") from err
        if self._ds.crs is None or self._ds.crs.to_epsg() is None:
            self._ds.close()
            raise RasterError(f"{self.path} has no EPSG coordinate reference system; re-export it with one")
        if self._ds.count < 3:
            self._ds.close()
            raise RasterError(f"{self.path} has {self._ds.count} band(s); an RGB raster needs 3")
        self.crs_epsg = int(self._ds.crs.to_epsg())
        self.georef = PatchGeoref(self.crs_epsg, tuple(self._ds.transform)[:6], self._ds.height, self._ds.width)

    def __enter__(self) -> GeoRaster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._ds.close()

    @property
    def m_per_px(self) -> float:
        return self.georef.m_per_px

    @property
    def bounds_crs(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the raster CRS."""
        b = self._ds.bounds
        return b.left, b.bottom, b.right, b.top

    def latlon_to_crs(self, lat_deg: float, lon_deg: float) -> tuple[float, float]:
        check_latlon(lat_deg, lon_deg)
        x, y = _transformer(4326, self.crs_epsg).transform(lon_deg, lat_deg)
        return float(x), float(y)

    def read_all(self) -> Patch:
        """The whole raster as one north-up ``(H, W, 3) uint8`` image (a search over the whole map needs it)."""
        a, b, _, d, e, _ = self.georef.affine
        if b or d or a <= 0 or e >= 0:
            raise RasterError(f"{self.path} is not north-up (affine {self.georef.affine}); warp it to a north-up "
                              "grid first (gdalwarp)")
        if self._ds.dtypes[0] != "uint8":
            raise RasterError(f"{self.path} has {self._ds.dtypes[0]} pixels; an RGB map raster needs uint8")
        image = np.ascontiguousarray(np.moveaxis(self._ds.read((1, 2, 3)), 0, -1))
        return Patch(image, self.georef, 1.0)

    def read_around_latlon(self, lat_deg: float, lon_deg: float, size_m: float, out_px: int) -> Patch:
        """A north-up square patch ``size_m`` wide centred on a lat/lon, resampled to ``out_px`` pixels."""
        x, y = self.latlon_to_crs(lat_deg, lon_deg)
        return self.read_around_crs(x, y, size_m, out_px)

    def read_around_crs(self, x: float, y: float, size_m: float, out_px: int) -> Patch:
        """Like :meth:`read_around_latlon` with the centre in raster CRS coordinates.

        Parts outside the raster are black and lower ``valid_fraction``; a patch entirely outside raises.
        """
        if not (size_m > 0 and out_px > 0):
            raise RasterError(f"size_m and out_px must be positive, got {size_m}, {out_px}")
        row_c, col_c = self.georef.crs_to_pixel(x, y)
        half_px = 0.5 * size_m / self.m_per_px
        row0, col0 = float(row_c) - half_px, float(col_c) - half_px
        r0, c0 = math.floor(row0), math.floor(col0)
        span = math.ceil(row0 + 2 * half_px) - r0 + 1
        valid = _valid_fraction(r0, c0, span, self._ds.height, self._ds.width)
        if valid <= 0.0:
            raise RasterError(f"window around ({x:.1f}, {y:.1f}) in EPSG:{self.crs_epsg} is outside {self.path}")
        data = _read_padded(self._ds, r0, c0, span)
        image = _resample_square(np.moveaxis(data, 0, -1), row0 - r0, col0 - c0, 2 * half_px, out_px)
        a, b, c, d, e, f = self.georef.affine
        ox, oy = self.georef.pixel_to_crs(row0, col0)
        scale = 2 * half_px / out_px
        affine = (a * scale, b * scale, float(ox), d * scale, e * scale, float(oy))
        return Patch(image, PatchGeoref(self.crs_epsg, affine, out_px, out_px), valid)


def _read_padded(ds, r0: int, c0: int, span: int) -> np.ndarray:
    """The ``(3, span, span)`` window of ``ds`` at pixel ``(r0, c0)``, black where it leaves the raster.

    Only the part on the raster is read, into a zero-filled array. (rasterio's ``boundless=True`` builds and
    opens a VRT dataset on every call: much slower, and resident memory grew by ~40 KiB per read, without
    bound, in the 30 Hz soak benchmark; see docs/runtime.md.)"""
    height, width = ds.height, ds.width
    out = np.zeros((3, span, span), dtype=ds.dtypes[0])
    top, left = max(r0, 0), max(c0, 0)
    bottom, right = min(r0 + span, height), min(c0 + span, width)
    if bottom > top and right > left:
        window = Window(left, top, right - left, bottom - top)
        out[:, top - r0:bottom - r0, left - c0:right - c0] = ds.read((1, 2, 3), window=window)
    return out


def _valid_fraction(r0: int, c0: int, span: int, height: int, width: int) -> float:
    rows = max(0, min(r0 + span, height) - max(r0, 0))
    cols = max(0, min(c0 + span, width) - max(c0, 0))
    return rows * cols / float(span * span)


def _resample_square(image: np.ndarray, row0: float, col0: float, size_px: float, out_px: int) -> np.ndarray:
    """Crop the square [row0, row0+size) x [col0, col0+size) (sub-pixel) and resize it to out_px."""
    scale = size_px / out_px
    matrix = np.array([[scale, 0.0, col0 + 0.5 * scale - 0.5], [0.0, scale, row0 + 0.5 * scale - 0.5]])
    interp = cv2.INTER_AREA if scale > 1.5 else cv2.INTER_LINEAR
    flags = interp | cv2.WARP_INVERSE_MAP
    if interp == cv2.INTER_AREA:  # warpAffine has no area filter: pre-shrink, then warp
        factor = int(scale)
        small = cv2.resize(image, None, fx=1.0 / factor, fy=1.0 / factor, interpolation=cv2.INTER_AREA)
        matrix = np.array([[scale / factor, 0.0, (col0 + 0.5 * scale) / factor - 0.5],
                           [0.0, scale / factor, (row0 + 0.5 * scale) / factor - 0.5]])
        image, flags = small, cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (out_px, out_px), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def write_geotiff(path: str | Path, image: np.ndarray, georef: PatchGeoref, tiled: bool = True) -> Path:
    """Write an (H, W, 3) uint8 RGB image as a tiled, deflate-compressed GeoTIFF with CRS and transform."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise RasterError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=image.shape[0], width=image.shape[1], count=3, dtype="uint8",
                   crs=f"EPSG:{georef.crs_epsg}", transform=rasterio.Affine(*georef.affine),
                   compress="deflate", photometric="RGB")
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    return path


def axis_centres(low: float, high: float, half: float, stride: float) -> np.ndarray:
    """Centres from ``low + half`` in steps of ``stride``; the last tile may overhang the edge by < stride."""
    count = max(1, math.ceil((high - low - 2 * half) / stride - 1e-9) + 1)
    return low + half + stride * np.arange(count)
