"""Building a tile index: cut geo-referenced tiles from GeoTIFF/COG orthophotos with windowed reads, embed them
with the retrieval encoder in batches, and write the index folder (see :mod:`edge_geoloc.runtime.tile_index`).

Tiles are north-up squares of ``tile_size_m`` in the raster's CRS, centred every ``stride_m``; tiles at the
map edge are kept when at least ``min_valid_fraction`` of them lies inside the raster.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_geoloc.artifacts import sha256_file
from edge_geoloc.geo import GeoRaster, latlon_to_utm, utm_to_latlon, utm_zone_for
from edge_geoloc.geo.geodesy import _transformer
from edge_geoloc.geo.raster import axis_centres
from edge_geoloc.runtime.config import TileIndexConfig
from edge_geoloc.runtime.tile_index import FORMAT, VERSION, Encoder, TileIndex, TileIndexError


@dataclass(frozen=True)
class TileGrid:
    """Tile centres of one raster (its CRS), with the pixel window and valid fraction of each."""

    crs_x: np.ndarray
    crs_y: np.ndarray
    window_row: np.ndarray
    window_col: np.ndarray
    window_px: np.ndarray
    valid_fraction: np.ndarray


def tile_grid(raster: GeoRaster, cfg: TileIndexConfig) -> TileGrid:
    """Tile centres every ``stride_m`` over the raster; tiles at the edge keep ``min_valid_fraction`` inside."""
    left, bottom, right, top = raster.bounds_crs
    half = 0.5 * cfg.tile_size_m
    xs = axis_centres(left, right, half, cfg.stride_m)
    ys = axis_centres(bottom, top, half, cfg.stride_m)[::-1]  # north first, like raster rows
    X, Y = (a.ravel() for a in np.meshgrid(xs, ys))
    row_c, col_c = raster.georef.crs_to_pixel(X, Y)
    size_px = cfg.tile_size_m / raster.m_per_px
    row0, col0 = np.floor(row_c - size_px / 2), np.floor(col_c - size_px / 2)
    inside_rows = np.clip(row0 + size_px, 0, raster.georef.height_px) - np.clip(row0, 0, raster.georef.height_px)
    inside_cols = np.clip(col0 + size_px, 0, raster.georef.width_px) - np.clip(col0, 0, raster.georef.width_px)
    valid = inside_rows * inside_cols / size_px**2
    keep = valid >= cfg.min_valid_fraction
    span = np.full(int(keep.sum()), math.ceil(size_px), dtype=np.int64)
    return TileGrid(X[keep], Y[keep], row0[keep].astype(np.int64), col0[keep].astype(np.int64), span, valid[keep])


class MapPatchesOnly:
    """The encoder of an index that only serves map patches around a prior (a car's ground camera: no retrieval);
    every tile gets the same 1-D embedding."""

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.ones((len(images), 1), np.float32)


def build_tile_index(rasters: Sequence[str | Path], encoder: Encoder, cfg: TileIndexConfig,
                     model_info: dict | None = None, out_dir: str | Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> TileIndex:
    """Cut tiles from each raster (windowed reads), embed them in batches, and return (and save) the index."""
    paths = [Path(p) for p in rasters]
    if not paths:
        raise TileIndexError("no orthophoto given: pass at least one GeoTIFF (--ortho AREA.tif)")
    grids, sources = [], []
    for path in paths:
        with GeoRaster(path) as raster:
            grids.append(tile_grid(raster, cfg))
            sources.append(_source_entry(path, raster, out_dir))
    tiles = _tile_table(grids, sources)
    embeddings = _embed_tiles(paths, grids, encoder, cfg, progress)
    manifest = _manifest(cfg, tiles, embeddings, sources, model_info)
    index = TileIndex(embeddings, tiles, manifest, Path(out_dir) if out_dir else None, cfg)
    if out_dir is not None:
        index.save(out_dir)
    return index


def _source_entry(path: Path, raster: GeoRaster, out_dir: str | Path | None) -> dict:
    entry = {"path": str(path.resolve()), "sha256": sha256_file(path), "crs_epsg": raster.crs_epsg,
             "height_px": raster.georef.height_px, "width_px": raster.georef.width_px,
             "m_per_px": raster.m_per_px}
    if out_dir is not None:
        entry["relpath"] = os.path.relpath(path.resolve(), Path(out_dir).resolve())
    return entry


def _tile_table(grids: list[TileGrid], sources: list[dict]) -> dict[str, np.ndarray]:
    lat, lon = [], []
    for grid, source in zip(grids, sources, strict=True):
        lo, la = _transformer(source["crs_epsg"], 4326).transform(grid.crs_x, grid.crs_y)
        lat.append(np.atleast_1d(la))
        lon.append(np.atleast_1d(lo))
    lat_all, lon_all = np.concatenate(lat), np.concatenate(lon)
    if lat_all.size == 0:
        raise TileIndexError("no tile fits the rasters: lower index.tile_size_m or index.min_valid_fraction")
    zone = utm_zone_for(float(lat_all.mean()), float(lon_all.mean()))
    east, north, _ = latlon_to_utm(lat_all, lon_all, zone)
    cat = lambda name: np.concatenate([getattr(g, name) for g in grids])  # noqa: E731
    return {"lat_deg": lat_all, "lon_deg": lon_all, "utm_east_m": np.atleast_1d(east),
            "utm_north_m": np.atleast_1d(north),
            "source": np.concatenate([np.full(len(g.crs_x), i, np.int32) for i, g in enumerate(grids)]),
            "crs_x": cat("crs_x"), "crs_y": cat("crs_y"), "window_row": cat("window_row"),
            "window_col": cat("window_col"), "window_px": cat("window_px"),
            "valid_fraction": cat("valid_fraction").astype(np.float32)}


def _iter_tile_images(paths: list[Path], grids: list[TileGrid], cfg: TileIndexConfig) -> Iterator[np.ndarray]:
    for path, grid in zip(paths, grids, strict=True):
        with GeoRaster(path) as raster:
            for x, y in zip(grid.crs_x, grid.crs_y, strict=True):
                yield raster.read_around_crs(float(x), float(y), cfg.tile_size_m, cfg.tile_px).image


def _embed_tiles(paths: list[Path], grids: list[TileGrid], encoder: Encoder, cfg: TileIndexConfig,
                 progress: Callable[[int, int], None] | None) -> np.ndarray:
    total = sum(len(g.crs_x) for g in grids)
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    done = 0
    for image in _iter_tile_images(paths, grids, cfg):
        batch.append(image)
        if len(batch) == cfg.batch_size:
            out.append(_normalise(encoder.embed(batch)))
            done, batch = done + len(batch), []
            if progress:
                progress(done, total)
    if batch:
        out.append(_normalise(encoder.embed(batch)))
        if progress:
            progress(total, total)
    return np.concatenate(out).astype(np.float16)


def _normalise(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or not np.all(np.isfinite(emb)):
        raise TileIndexError(f"the encoder returned {emb.shape} with non-finite values or not (N, D)")
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _manifest(cfg: TileIndexConfig, tiles: dict[str, np.ndarray], embeddings: np.ndarray, sources: list[dict],
              model_info: dict | None) -> dict:
    zone = utm_zone_for(float(tiles["lat_deg"].mean()), float(tiles["lon_deg"].mean()))
    centre = utm_to_latlon(float(tiles["utm_east_m"].mean()), float(tiles["utm_north_m"].mean()), zone)
    return {"format": FORMAT, "version": VERSION, "count": int(len(embeddings)),
            "embed_dim": int(embeddings.shape[1]), "dtype": "float16", "tile_size_m": cfg.tile_size_m,
            "stride_m": cfg.stride_m, "tile_px": cfg.tile_px, "min_valid_fraction": cfg.min_valid_fraction,
            "utm_zone": {"number": zone.number, "north": zone.north, "epsg": zone.epsg},
            "centre_lat_deg": float(centre[0]), "centre_lon_deg": float(centre[1]),
            "model": model_info or {}, "sources": sources, "created_s": time.time()}
