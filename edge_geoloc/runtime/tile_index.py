"""Geo-referenced tile index: tiles cut from GeoTIFF/COG orthophotos, their retrieval embeddings, and search.

Folder layout (see docs/interfaces.md)::

    manifest.json    format, counts, tile geometry, UTM zone, model (path, sha256), source rasters
    embeddings.npy   (N, D) float16, L2-normalised
    tiles.npz        per tile: lat_deg, lon_deg, utm_east_m, utm_north_m, source, crs_x, crs_y,
                     window_row, window_col, window_px (the tile's pixel window in its source raster),
                     valid_fraction
    faiss.index      optional approximate index (IVF) for large sets

Aerial patches for the localizer are read back from the source GeoTIFF on demand (:meth:`TileIndex.read_patch`),
never duplicated. Search ranks tiles by cosine similarity (dot product of normalised embeddings); with a prior
position and radius only the tiles whose centres lie inside the circle compete (found through a grid of
``bucket_m`` cells), otherwise all tiles. ``exact`` scans the candidates; ``faiss`` uses an IVF index.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.geo import GeoRaster, Patch, RasterError, latlon_to_utm, utm_to_latlon, utm_zone_for
from edge_geoloc.geo.geodesy import UtmZone, _transformer
from edge_geoloc.runtime.config import TileIndexConfig

log = logging.getLogger(__name__)

FORMAT = "edge_geoloc.tile_index"
VERSION = 1
TILE_FIELDS = ("lat_deg", "lon_deg", "utm_east_m", "utm_north_m", "source", "crs_x", "crs_y", "window_row",
               "window_col", "window_px", "valid_fraction")


class TileIndexError(ValueError):
    """An index folder is missing, inconsistent, or does not fit the query."""


class Encoder(Protocol):
    """Embeds RGB images: ``embed([(H, W, 3) uint8, ...]) -> (N, D) float32``, rows L2-normalised."""

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class SearchResult:
    """Top-k tiles, best first: ids into the index, cosine scores, and how the search was done."""

    ids: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) float32
    candidates: int  # tiles that competed (inside the radius, or all)
    method: str  # "exact" | "faiss" | "faiss+selector" | "empty"
    elapsed_ms: float


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
    xs = _axis_centres(left, right, half, cfg.stride_m)
    ys = _axis_centres(bottom, top, half, cfg.stride_m)[::-1]  # north first, like raster rows
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


def _axis_centres(low: float, high: float, half: float, stride: float) -> np.ndarray:
    """Centres from ``low + half`` in steps of ``stride``; the last tile may overhang the edge by < stride."""
    count = max(1, math.ceil((high - low - 2 * half) / stride - 1e-9) + 1)
    return low + half + stride * np.arange(count)


class SpatialBuckets:
    """Tile centres hashed into square cells of ``cell_m`` so a radius query touches only nearby cells."""

    def __init__(self, east_m: np.ndarray, north_m: np.ndarray, cell_m: float) -> None:
        self.east, self.north, self.cell = east_m.astype(np.float64), north_m.astype(np.float64), float(cell_m)
        ix, iy = np.floor(self.east / cell_m).astype(np.int64), np.floor(self.north / cell_m).astype(np.int64)
        self._stride = 1 << 31
        keys = iy * self._stride + ix
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def within(self, east_m: float, north_m: float, radius_m: float) -> np.ndarray:
        """Sorted ids of the points within ``radius_m`` of (east, north)."""
        x0, x1 = (math.floor((east_m + s * radius_m) / self.cell) for s in (-1, 1))
        y0, y1 = (math.floor((north_m + s * radius_m) / self.cell) for s in (-1, 1))
        if (y1 - y0 + 1) > 4096:  # a huge radius: a full scan is cheaper than thousands of cell rows
            ids = np.arange(self.east.size)
        else:
            parts = [self._order[slice(*np.searchsorted(self._keys, [y * self._stride + x0,
                                                                      y * self._stride + x1 + 1]))]
                     for y in range(y0, y1 + 1)]
            ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        d2 = (self.east[ids] - east_m) ** 2 + (self.north[ids] - north_m) ** 2
        return np.sort(ids[d2 <= radius_m**2])


class TileIndex:
    """Embeddings (float16) and geo-referenced tiles, with exact and approximate top-k search."""

    def __init__(self, embeddings: np.ndarray, tiles: dict[str, np.ndarray], manifest: dict,
                 root: Path | None = None, cfg: TileIndexConfig | None = None) -> None:
        if embeddings.ndim != 2 or any(len(tiles[f]) != len(embeddings) for f in TILE_FIELDS):
            raise TileIndexError(f"embeddings {embeddings.shape} and tile table sizes do not match; rebuild the "
                                 "index with `edge-geoloc build-index`")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float16)  # (N, D)
        self.tiles, self.manifest, self.root = tiles, manifest, root
        self.cfg = cfg or TileIndexConfig()
        self.zone = UtmZone(int(manifest["utm_zone"]["number"]), bool(manifest["utm_zone"]["north"]))
        self._buckets = SpatialBuckets(tiles["utm_east_m"], tiles["utm_north_m"], self.cfg.bucket_m)
        self._faiss = None
        self._rasters: dict[int, GeoRaster] = {}

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def tile_size_m(self) -> float:
        return float(self.manifest["tile_size_m"])

    def memory_bytes(self) -> dict[str, int]:
        """Resident bytes of the embeddings, the tile table and the faiss index (if any)."""
        faiss_bytes = 0
        if self._faiss is not None:
            import faiss

            faiss_bytes = int(faiss.serialize_index(self._faiss).nbytes)
        return {"embeddings": int(self.embeddings.nbytes),
                "tiles": int(sum(a.nbytes for a in self.tiles.values())), "faiss": faiss_bytes}

    def tile_latlon(self, tile_id: int) -> tuple[float, float]:
        return float(self.tiles["lat_deg"][tile_id]), float(self.tiles["lon_deg"][tile_id])

    def latlon_to_utm(self, lat_deg: float, lon_deg: float) -> tuple[float, float]:
        east, north, _ = latlon_to_utm(lat_deg, lon_deg, self.zone)
        return float(east), float(north)

    def candidates_within(self, lat_deg: float, lon_deg: float, radius_m: float) -> np.ndarray:
        """Ids of the tiles whose centres lie within ``radius_m`` of a lat/lon (UTM distance)."""
        return self._buckets.within(*self.latlon_to_utm(lat_deg, lon_deg), radius_m)

    def search(self, query: np.ndarray, k: int = 10, prior_latlon: tuple[float, float] | None = None,
               radius_m: float | None = None, method: str | None = None) -> SearchResult:
        """Top-``k`` tiles by cosine similarity to ``query`` (D,), inside ``radius_m`` of the prior if given."""
        start = time.perf_counter()
        q = self._check_query(query)
        method = method or self.cfg.search
        if prior_latlon is not None and radius_m is not None:
            cand = self.candidates_within(prior_latlon[0], prior_latlon[1], radius_m)
            if cand.size == 0:
                return SearchResult(np.zeros(0, np.int64), np.zeros(0, np.float32), 0, "empty", _ms(start))
            if method == "exact" or (method == "auto" and cand.size <= self.cfg.exact_max_candidates):
                ids, scores = exact_top_k(self.embeddings, q, k, cand)
                return SearchResult(ids, scores, int(cand.size), "exact", _ms(start))
            ids, scores = self._faiss_search(q, k, cand)
            return SearchResult(ids, scores, int(cand.size), "faiss+selector", _ms(start))
        if method == "exact" or (method == "auto" and len(self) < self.cfg.faiss_min_tiles):
            ids, scores = exact_top_k(self.embeddings, q, k)
            return SearchResult(ids, scores, len(self), "exact", _ms(start))
        ids, scores = self._faiss_search(q, k, None)
        return SearchResult(ids, scores, len(self), "faiss", _ms(start))

    def _check_query(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.size != self.embed_dim or not np.all(np.isfinite(q)):
            raise TileIndexError(f"query embedding must be {self.embed_dim} finite values (the index's model), "
                                 f"got {q.size}; was the index built with another retrieval model?")
        norm = float(np.linalg.norm(q))
        return q / norm if norm > 0 else q

    def build_faiss(self, nlist: int | None = None, train_size: int = 100_000, seed: int = 0) -> None:
        """Build the IVF index (``faiss_store``: fp16 scalar quantiser, flat float32, or PQ) over all tiles."""
        self._faiss = build_faiss_ivf(self.embeddings, nlist or self.cfg.faiss_nlist, self.cfg.faiss_store,
                                      train_size, seed)

    def _faiss_search(self, q: np.ndarray, k: int, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self._faiss is None:
            log.info("building the faiss IVF index over %d tiles (save the index to keep it)", len(self))
            self.build_faiss()
        params = faiss.SearchParametersIVF(nprobe=self.cfg.faiss_nprobe)
        if cand is not None:
            params.sel = faiss.IDSelectorBatch(cand.astype(np.int64))
        scores, ids = self._faiss.search(q[None], k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def read_patch(self, tile_id: int, size_m: float | None = None, out_px: int | None = None) -> Patch:
        """The aerial patch of a tile, read on demand from its source GeoTIFF (north-up, ``size_m`` wide)."""
        source = int(self.tiles["source"][tile_id])
        raster = self._raster(source)
        return raster.read_around_crs(float(self.tiles["crs_x"][tile_id]), float(self.tiles["crs_y"][tile_id]),
                                      size_m or self.tile_size_m, out_px or int(self.manifest["tile_px"]))

    def _raster(self, source: int) -> GeoRaster:
        if source not in self._rasters:
            self._rasters[source] = GeoRaster(resolve_source(self.manifest["sources"][source], self.root))
        return self._rasters[source]

    def close(self) -> None:
        for raster in self._rasters.values():
            raster.close()
        self._rasters.clear()

    def save(self, out_dir: str | Path) -> Path:
        """Write the index folder (manifest last, so a half-written folder has no manifest)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "embeddings.npy", self.embeddings)
        np.savez(out / "tiles.npz", **self.tiles)
        if self._faiss is not None:
            import faiss

            faiss.write_index(self._faiss, str(out / "faiss.index"))
        atomic_write_json(out / "manifest.json", self.manifest)
        return out

    @classmethod
    def load(cls, index_dir: str | Path, cfg: TileIndexConfig | None = None) -> TileIndex:
        root = Path(index_dir)
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise TileIndexError(f"{root} is not a tile index (no manifest.json); build one with "
                                 "`edge-geoloc build-index --ortho AREA.tif --model retrieval.onnx --out DIR`")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise TileIndexError(f"{manifest_path}: format {manifest.get('format')!r} v{manifest.get('version')} "
                                 f"is not {FORMAT} v{VERSION}; rebuild the index")
        with np.load(root / "tiles.npz") as data:
            tiles = {f: data[f] for f in TILE_FIELDS}
        index = cls(np.load(root / "embeddings.npy"), tiles, manifest, root, cfg)
        if (root / "faiss.index").is_file():
            import faiss

            index._faiss = faiss.read_index(str(root / "faiss.index"))
        return index


def exact_top_k(embeddings: np.ndarray, q: np.ndarray, k: int, candidates: np.ndarray | None = None,
                chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by dot product over float16 rows (converted to float32 chunk by chunk), best first."""
    ids = np.arange(len(embeddings)) if candidates is None else candidates
    scores = np.empty(ids.size, dtype=np.float32)
    for s in range(0, ids.size, chunk):
        rows = embeddings[s:s + chunk] if candidates is None else embeddings[ids[s:s + chunk]]
        scores[s:s + chunk] = rows.astype(np.float32) @ q
    k = min(k, ids.size)
    part = np.argpartition(-scores, k - 1)[:k] if k < ids.size else np.arange(ids.size)
    order = part[np.argsort(-scores[part], kind="stable")]
    return ids[order].astype(np.int64), scores[order]


def build_faiss_ivf(embeddings: np.ndarray, nlist: int, store: str, train_size: int, seed: int):
    """An inner-product IVF index over ``embeddings`` (N, D), trained on a random sample of ``train_size``."""
    import faiss

    n, d = embeddings.shape
    nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(d)
    if store == "flat":
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    elif store == "pq":
        index = faiss.IndexIVFPQ(quantizer, d, nlist, max(1, d // 8), 8, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, max(train_size, 39 * nlist)), replace=False)
    index.train(embeddings[np.sort(sample)].astype(np.float32))
    for s in range(0, n, 100_000):
        index.add(embeddings[s:s + 100_000].astype(np.float32))
    return index


def resolve_source(source: dict, root: Path | None) -> Path:
    """A source raster path: relative to the index folder first, then as recorded."""
    candidates = [root / source["relpath"]] if root is not None and source.get("relpath") else []
    candidates.append(Path(source["path"]))
    for path in candidates:
        if path.is_file():
            return path
    raise TileIndexError(f"source raster {source['path']} not found (looked in {[str(c) for c in candidates]}); "
                         "keep the orthophoto next to the index or rebuild it")


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
    from edge_geoloc.artifacts import sha256_file

    entry = {"path": str(path.resolve()), "sha256": sha256_file(path), "crs_epsg": raster.crs_epsg,
             "height_px": raster.georef.height_px, "width_px": raster.georef.width_px,
             "m_per_px": raster.m_per_px}
    if out_dir is not None:
        import os

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


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


__all__ = ["Encoder", "RasterError", "SearchResult", "SpatialBuckets", "TileIndex", "TileIndexError",
           "build_faiss_ivf", "build_tile_index", "exact_top_k", "tile_grid"]
