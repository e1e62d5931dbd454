"""Geo-referenced tile index: tiles cut from GeoTIFF/COG orthophotos, their retrieval embeddings, and search.

Folder layout (see docs/interfaces.md)::

    manifest.json    format, counts, tile geometry, UTM zone, model (path, sha256), source rasters
    embeddings.npy   (N, D) float16, L2-normalised
    tiles.npz        per tile: lat_deg, lon_deg, utm_east_m, utm_north_m, source, crs_x, crs_y,
                     window_row, window_col, window_px (the tile's pixel window in its source raster),
                     valid_fraction
    faiss.index      optional approximate index (IVF) for large sets

Building (cutting tiles from GeoTIFFs and embedding them) lives in :mod:`edge_geoloc.runtime.tile_build`.
Aerial patches for the localizer are read back from the source GeoTIFF on demand (:meth:`TileIndex.read_patch`),
never duplicated. Search ranks tiles by cosine similarity (dot product of normalised embeddings); with a prior
position and radius only the tiles whose centres lie inside the circle compete (found through a grid of
``bucket_m`` cells), otherwise all tiles. ``exact`` scans the candidates; ``faiss`` uses an IVF index.

The default IVF store is ``fastscan``: 4-bit product-quantised codes scanned with SIMD lookup tables, so many
lists can be probed cheaply; their approximate top-``faiss_rerank`` is then re-scored exactly against the
float16 embeddings. Coarse codes find the neighbourhood, the exact re-score orders it
(benchmarks/tile_index.py: recall@10 and latency on 1M tiles).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_geoloc.artifacts import atomic_write_json
from edge_geoloc.geo import GeoRaster, Patch, RasterError, latlon_to_utm
from edge_geoloc.geo.geodesy import UtmZone
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
        self._flat = None  # exact brute-force index over all tiles (fp16), built on first global search
        self._rasters: dict[int, GeoRaster] = {}
        self._patches: dict[tuple[int, float, int], Patch] = {}

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def tile_size_m(self) -> float:
        return float(self.manifest["tile_size_m"])

    def memory_bytes(self) -> dict[str, int]:
        """Resident bytes of the embeddings, the tile table, the faiss IVF index and the exact flat index."""
        import faiss

        def size(index) -> int:
            return 0 if index is None else int(faiss.serialize_index(index).nbytes)

        return {"embeddings": int(self.embeddings.nbytes),
                "tiles": int(sum(a.nbytes for a in self.tiles.values())), "faiss": size(self._faiss),
                "exact_flat": size(self._flat)}

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
            ids, scores = self._exact_all(q, k)
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

    def _exact_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over every tile with faiss's flat fp16 index (SIMD decoding; numpy's float16 -> float32
        conversion would cost more than the dot products). Built on first use."""
        import faiss

        if self._flat is None:
            self._flat = faiss.IndexScalarQuantizer(self.embed_dim, faiss.ScalarQuantizer.QT_fp16,
                                                    faiss.METRIC_INNER_PRODUCT)
            for s in range(0, len(self), 100_000):
                self._flat.add(self.embeddings[s:s + 100_000].astype(np.float32))
        scores, ids = self._flat.search(q[None], min(k, len(self)))
        return ids[0].astype(np.int64), scores[0].astype(np.float32)

    def build_faiss(self, nlist: int | None = None, train_size: int = 50_000, seed: int = 0) -> None:
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
        fetch = max(k, self.cfg.faiss_rerank)
        scores, ids = self._faiss.search(q[None], fetch, params=params)
        keep = ids[0] >= 0
        if self.cfg.faiss_rerank:  # exact cosine over the shortlist: quantisation error no longer orders it
            return exact_top_k(self.embeddings, q, k, ids[0][keep].astype(np.int64))
        return ids[0][keep][:k].astype(np.int64), scores[0][keep][:k].astype(np.float32)

    def read_patch(self, tile_id: int, size_m: float | None = None, out_px: int | None = None) -> Patch:
        """The aerial patch of a tile, read on demand from its source GeoTIFF (north-up, ``size_m`` wide).

        The last ``patch_cache`` patches are kept: consecutive frames usually land on the same tiles."""
        key = (int(tile_id), float(size_m or self.tile_size_m), int(out_px or self.manifest["tile_px"]))
        patch = self._patches.pop(key, None)
        if patch is None:
            raster = self._raster(int(self.tiles["source"][tile_id]))
            patch = raster.read_around_crs(float(self.tiles["crs_x"][tile_id]), float(self.tiles["crs_y"][tile_id]),
                                           key[1], key[2])
            patch.image.setflags(write=False)  # shared between callers through the cache
        self._patches[key] = patch  # most recently used last
        while len(self._patches) > self.cfg.patch_cache:
            self._patches.pop(next(iter(self._patches)))
        return patch

    def nearest_tile(self, lat_deg: float, lon_deg: float) -> int | None:
        """The tile whose centre is closest to a point (None for an empty index)."""
        if len(self) == 0:
            return None
        east, north, _ = latlon_to_utm(lat_deg, lon_deg, self.zone)
        d2 = (self.tiles["utm_east_m"] - east) ** 2 + (self.tiles["utm_north_m"] - north) ** 2
        return int(np.argmin(d2))

    def read_patch_around(self, lat_deg: float, lon_deg: float, size_m: float, out_px: int | None = None
                          ) -> tuple[int, Patch] | None:
        """(nearest tile id, a north-up patch centred on the point) from the nearest tile's source raster."""
        tile_id = self.nearest_tile(lat_deg, lon_deg)
        if tile_id is None:
            return None
        raster = self._raster(int(self.tiles["source"][tile_id]))
        try:
            patch = raster.read_around_latlon(lat_deg, lon_deg, size_m, int(out_px or self.manifest["tile_px"]))
        except RasterError:
            return None
        return tile_id, patch

    def covers(self, tile_id: int, x: float, y: float) -> bool:
        """Whether a point in the tile's source CRS lies on that source raster (not on the black outside)."""
        left, bottom, right, top = self._raster(int(self.tiles["source"][tile_id])).bounds_crs
        return left <= x <= right and bottom <= y <= top

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
    """An inner-product IVF index over ``embeddings`` (N, D), trained on a random sample of ``train_size``.

    ``store``: ``fastscan`` (4-bit PQ, SIMD scan, meant to be re-ranked), ``fp16`` (scalar quantiser),
    ``flat`` (float32) or ``pq`` (8-bit PQ)."""
    import faiss

    n, d = embeddings.shape
    nlist = nlist or max(1, min(int(math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(d)
    if store == "fastscan":
        index = faiss.IndexIVFPQFastScan(quantizer, d, nlist, fastscan_subquantizers(d), 4,
                                         faiss.METRIC_INNER_PRODUCT)
    elif store == "flat":
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


def fastscan_subquantizers(dim: int) -> int:
    """PQ sub-vectors for 4-bit fast scan: about 4 dimensions each, an even number that divides ``dim``."""
    for m in range(max(2, dim // 4), 1, -1):
        if dim % m == 0 and m % 2 == 0:
            return m
    raise TileIndexError(f"embedding dimension {dim} has no even divisor for fast-scan PQ; use faiss_store=fp16")


def resolve_source(source: dict, root: Path | None) -> Path:
    """A source raster path: relative to the index folder first, then as recorded."""
    candidates = [root / source["relpath"]] if root is not None and source.get("relpath") else []
    candidates.append(Path(source["path"]))
    for path in candidates:
        if path.is_file():
            return path
    raise TileIndexError(f"source raster {source['path']} not found (looked in {[str(c) for c in candidates]}); "
                         "keep the orthophoto next to the index or rebuild it")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


__all__ = ["Encoder", "SearchResult", "SpatialBuckets", "TileIndex", "TileIndexError", "build_faiss_ivf",
           "exact_top_k", "fastscan_subquantizers"]
