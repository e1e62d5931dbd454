"""Tile index: grid at the map edge, build/save/load round trip, exact and faiss search, radius restriction."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge_geoloc.geo import GeoRaster, PatchGeoref, latlon_to_utm, utm_zone_for, write_geotiff
from edge_geoloc.runtime.config import TileIndexConfig
from edge_geoloc.runtime.tile_build import build_tile_index, tile_grid
from edge_geoloc.runtime.tile_index import (
    SpatialBuckets,
    TileIndex,
    TileIndexError,
    exact_top_k,
    fastscan_subquantizers,
)

LAT0, LON0 = 52.0, 4.36


def make_ortho(path, size_m: float = 300.0, gsd_m: float = 0.5, seed: int = 0, east_offset_m: float = 0.0
               ) -> PatchGeoref:
    """A textured north-up RGB GeoTIFF in UTM centred ``east_offset_m`` east of (LAT0, LON0); returns its georef."""
    rng = np.random.default_rng(seed)
    px = int(round(size_m / gsd_m))
    noise = rng.random((px // 8, px // 8, 3)).astype(np.float32)
    image = cv2.resize(noise, (px, px), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    zone = utm_zone_for(LAT0, LON0)
    east, north, _ = latlon_to_utm(LAT0, LON0, zone)
    left = east + east_offset_m - size_m / 2
    georef = PatchGeoref(zone.epsg, (gsd_m, 0.0, left, 0.0, -gsd_m, north + size_m / 2), px, px)
    write_geotiff(path, image, georef)
    return georef


class ThumbnailEncoder:
    """A deterministic stand-in for the retrieval model: the zero-mean 8x8 grey thumbnail, normalised."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images):
        self.calls += 1
        rows = []
        for img in images:
            grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32)
            thumb = cv2.resize(grey, (8, 8), interpolation=cv2.INTER_AREA).ravel()
            rows.append(thumb - thumb.mean())
        emb = np.stack(rows)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ortho(tmp_path_factory):
    path = tmp_path_factory.mktemp("ortho") / "area.tif"
    make_ortho(path)
    return path


@pytest.fixture(scope="module")
def index(ortho, tmp_path_factory):
    out = tmp_path_factory.mktemp("index")
    cfg = TileIndexConfig(tile_size_m=60.0, stride_m=30.0, tile_px=64, batch_size=7)
    return build_tile_index([ortho], ThumbnailEncoder(), cfg, {"name": "thumbnail"}, out_dir=out)


def test_tile_grid_keeps_edge_tiles_by_valid_fraction(ortho):
    with GeoRaster(ortho) as raster:
        # 300 m raster, 120 m tiles every 70 m: centres at 60, 130, 200, 270 -> the last overhangs by 30 m
        grid = tile_grid(raster, TileIndexConfig(tile_size_m=120.0, stride_m=70.0, min_valid_fraction=0.5))
        assert len(grid.crs_x) == 16
        assert grid.valid_fraction.min() == pytest.approx(0.75**2, abs=0.01)
        strict = tile_grid(raster, TileIndexConfig(tile_size_m=120.0, stride_m=70.0, min_valid_fraction=1.0))
        assert len(strict.crs_x) == 9


def test_build_save_load_round_trip(index, ortho):
    loaded = TileIndex.load(index.root)
    assert loaded.embeddings.dtype == np.float16 and np.array_equal(loaded.embeddings, index.embeddings)
    assert len(loaded) == 81  # 300 m / 30 m stride with 60 m tiles: 9 x 9
    manifest = json.loads((index.root / "manifest.json").read_text())
    assert manifest["count"] == 81 and manifest["embed_dim"] == 64 and len(manifest["sources"][0]["sha256"]) == 64
    lat, lon = loaded.tile_latlon(40)  # the centre tile
    assert (lat, lon) == pytest.approx((LAT0, LON0), abs=1e-6)
    with GeoRaster(ortho) as raster:
        direct = raster.read_around_latlon(lat, lon, 60.0, 64).image
    assert np.array_equal(loaded.read_patch(40).image, direct)  # aerial patches come from the GeoTIFF
    loaded.close()


def test_exact_search_finds_the_tile_a_query_was_cut_from(index):
    patch = index.read_patch(23)
    query = ThumbnailEncoder().embed([patch.image])[0]
    result = index.search(query, k=5)
    assert result.ids[0] == 23 and result.scores[0] == pytest.approx(1.0, abs=2e-3)
    assert result.method == "exact" and result.candidates == 81
    assert np.all(np.diff(result.scores) <= 0)


def test_search_is_restricted_to_the_prior_radius(index):
    query = ThumbnailEncoder().embed([index.read_patch(23).image])[0]
    prior = index.tile_latlon(60)
    result = index.search(query, k=50, prior_latlon=prior, radius_m=45.0)
    east0, north0 = index.latlon_to_utm(*prior)
    dist = np.hypot(index.tiles["utm_east_m"][result.ids] - east0, index.tiles["utm_north_m"][result.ids] - north0)
    assert 23 not in result.ids and len(result.ids) == result.candidates == 9  # 3x3 tiles within 45 m
    assert dist.max() <= 45.0
    far = index.search(query, k=5, prior_latlon=(LAT0 + 0.1, LON0), radius_m=100.0)
    assert far.method == "empty" and far.ids.size == 0


def test_query_of_the_wrong_size_gets_a_clear_error(index, tmp_path):
    with pytest.raises(TileIndexError, match="another retrieval model"):
        index.search(np.ones(32), k=3)
    with pytest.raises(TileIndexError, match="build-index"):
        TileIndex.load(tmp_path)


def test_spatial_buckets_match_brute_force():
    rng = np.random.default_rng(1)
    east, north = rng.uniform(-5000, 5000, 20_000), rng.uniform(-5000, 5000, 20_000)
    buckets = SpatialBuckets(east, north, cell_m=250.0)
    for _ in range(20):
        cx, cy, r = *rng.uniform(-6000, 6000, 2), rng.uniform(10, 2000)
        expected = np.flatnonzero((east - cx) ** 2 + (north - cy) ** 2 <= r * r)
        assert np.array_equal(buckets.within(cx, cy, r), expected)


def _random_index(n: int, d: int, cfg: TileIndexConfig, seed: int = 0) -> TileIndex:
    """Clustered random unit embeddings (like real tiles: neighbours look alike) on a 10 m grid."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 20, d)).astype(np.float32)
    emb = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    side = int(np.ceil(np.sqrt(n)))
    east = 500_000.0 + 10.0 * (np.arange(n) % side)
    north = 5_760_000.0 + 10.0 * (np.arange(n) // side)
    tiles = {f: np.zeros(n) for f in ("lat_deg", "lon_deg", "source", "crs_x", "crs_y", "window_row",
                                         "window_col", "window_px", "valid_fraction")}
    tiles.update(utm_east_m=east, utm_north_m=north)
    manifest = {"utm_zone": {"number": 31, "north": True}, "tile_size_m": 10.0, "tile_px": 32}
    return TileIndex(emb.astype(np.float16), tiles, manifest, None, cfg)


def test_faiss_recall_against_exact_search():
    cfg = TileIndexConfig(faiss_nprobe=8, faiss_store="fp16")
    index = _random_index(8000, 64, cfg)
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(30):
        q = index.embeddings[rng.integers(len(index))].astype(np.float32) + 0.1 * rng.standard_normal(64)
        exact = index.search(q, k=10, method="exact")
        approx = index.search(q, k=10, method="faiss")
        assert approx.method == "faiss"
        hits += len(set(exact.ids) & set(approx.ids))
    assert hits / 300 >= 0.9
    assert index.memory_bytes()["faiss"] > 0


def test_faiss_with_selector_only_returns_tiles_inside_the_radius():
    cfg = TileIndexConfig(exact_max_candidates=10, faiss_nprobe=64)
    index = _random_index(4000, 32, cfg)
    index.zone = utm_zone_for(LAT0, LON0)
    lat, lon = 52.0, 3.0  # the centre of UTM zone 31N is at lon 3
    east0, north0 = index.latlon_to_utm(lat, lon)
    index.tiles["utm_east_m"] += east0 - 500_000.0 + 1.0
    index.tiles["utm_north_m"] += north0 - 5_760_000.0 + 1.0
    index._buckets = SpatialBuckets(index.tiles["utm_east_m"], index.tiles["utm_north_m"], 250.0)
    q = index.embeddings[7].astype(np.float32)
    result = index.search(q, k=5, prior_latlon=(lat, lon), radius_m=100.0)
    inside = set(index.candidates_within(lat, lon, 100.0))
    assert result.method == "faiss+selector" and result.candidates == len(inside) > 10
    assert set(result.ids) <= inside
    exact_ids, _ = exact_top_k(index.embeddings, q / np.linalg.norm(q), 5, np.array(sorted(inside)))
    assert result.ids[0] == exact_ids[0]


def test_patch_cache_keeps_recent_patches_read_only(ortho):
    index = build_tile_index([ortho], ThumbnailEncoder(), TileIndexConfig(tile_size_m=60.0, stride_m=30.0,
                                                                          tile_px=32, patch_cache=2))
    first = index.read_patch(3)
    assert index.read_patch(3) is first and not first.image.flags.writeable
    index.read_patch(4)
    index.read_patch(5)  # evicts tile 3 (least recently used)
    again = index.read_patch(3)
    assert again is not first and np.array_equal(again.image, first.image)


def test_index_over_two_rasters_reads_patches_from_the_right_one(tmp_path, ortho):
    second = tmp_path / "east.tif"
    make_ortho(second, size_m=120.0, seed=7, east_offset_m=400.0)
    cfg = TileIndexConfig(tile_size_m=60.0, stride_m=30.0, tile_px=32)
    index = build_tile_index([ortho, second], ThumbnailEncoder(), cfg, out_dir=tmp_path / "index")
    assert len(index) == 81 + 9 and set(index.tiles["source"][81:]) == {1}
    assert len(index.manifest["sources"]) == 2
    loaded = TileIndex.load(tmp_path / "index")
    east0, _ = loaded.latlon_to_utm(LAT0, LON0)
    assert loaded.tiles["utm_east_m"][85] == pytest.approx(east0 + 400.0, abs=0.01)  # centre of the 3x3
    with GeoRaster(second) as raster:
        direct = raster.read_around_latlon(*loaded.tile_latlon(85), 60.0, 32).image
    assert np.array_equal(loaded.read_patch(85).image, direct)


def test_fastscan_shortlist_reranked_exactly_recovers_the_exact_top_10():
    """4-bit codes alone misorder near neighbours; the exact re-score of their top-100 puts them back."""
    index = _random_index(8000, 64, TileIndexConfig(faiss_store="fastscan", faiss_nprobe=16, faiss_rerank=100))
    assert fastscan_subquantizers(64) == 16 and fastscan_subquantizers(256) == 64
    rng = np.random.default_rng(5)
    recall = {}
    for rerank in (0, 100):
        index.cfg = TileIndexConfig(faiss_store="fastscan", faiss_nprobe=16, faiss_rerank=rerank)
        hits = 0
        for _ in range(30):
            q = index.embeddings[rng.integers(len(index))].astype(np.float32) + 0.1 * rng.standard_normal(64)
            exact, approx = index.search(q, k=10, method="exact"), index.search(q, k=10, method="faiss")
            hits += len(set(exact.ids) & set(approx.ids))
            if rerank:  # re-ranked scores are the exact cosines, best first
                np.testing.assert_allclose(approx.scores, exact.scores[:len(approx.scores)], atol=1e-3)
        recall[rerank] = hits / 300
    assert recall[100] >= 0.99 and recall[0] < recall[100]
