"""Tile index benchmark: global top-10 search latency and recall@10 against exact search, memory, build time.

Synthetic embeddings, float16 unit vectors, tile centres on a 50 m grid. **No trained retrieval model was
used**: none exists at a scale worth indexing yet, so three synthetic distributions stand in for it:

- ``blob``: N/50 random centres, 50 tiles around each (the distribution of the earlier runs of this benchmark);
- ``spatial``: what real tiles look like: a land-cover class (24 classes, repeated across the map in 1 km
  cells), a field that varies smoothly with position (overlapping neighbours look alike) and per-tile detail;
- ``iid``: independent uniform unit vectors, a worst case with no structure at all (recall@10 of a noisy
  query is then nearly meaningless: its 10 exact neighbours besides the source tile are arbitrary).

Queries are tile embeddings plus noise (a drone/satellite domain gap, cosine ~0.8 to the source tile).
Per size and distribution, side by side: exact search (faiss flat fp16), IVF with fp16 vectors (the old
default) and IVF 4-bit PQ fast-scan whose top ``--rerank`` is re-scored exactly (the new default), each at
several ``--nprobe``; plus exact search in a 300 m radius (the on-board case with a prior). IVF lists: sqrt(N).

    python benchmarks/tile_index.py                       # 10k, 100k, 1M tiles, 256-D, all distributions
    python benchmarks/tile_index.py --quick               # 10k, 100k
    python benchmarks/tile_index.py --sizes 1000000 --distributions spatial
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from edge_geoloc.geo import utm_to_latlon
from edge_geoloc.runtime.config import TileIndexConfig
from edge_geoloc.runtime.tile_index import TILE_FIELDS, TileIndex

STRIDE_M = 50.0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def blob_embeddings(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((max(n // 50, 1), dim)).astype(np.float32)
    emb = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        emb[s:s + m] = _unit(centres[rng.integers(0, len(centres), m)]
                             + 0.5 * rng.standard_normal((m, dim)).astype(np.float32))
    return emb


def iid_embeddings(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    emb = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 100_000):
        emb[s:s + 100_000] = _unit(rng.standard_normal((min(100_000, n - s), dim)).astype(np.float32))
    return emb


def spatial_embeddings(n: int, dim: int, rng: np.random.Generator, classes: int = 24, class_cell: int = 20,
                       smooth_cell: int = 8) -> np.ndarray:
    """Tile (i, j) on the grid: its 1 km cell's land-cover class + a smooth field (bilinear over a lattice every
    ``smooth_cell`` tiles) + per-tile detail, weights 1.0 / 0.8 / 0.6 of unit vectors."""
    side = int(np.ceil(np.sqrt(n)))
    class_vectors = _unit(rng.standard_normal((classes, dim)).astype(np.float32))
    class_map = rng.integers(0, classes, (side // class_cell + 1, side // class_cell + 1))
    lattice = _unit(rng.standard_normal((side // smooth_cell + 2, side // smooth_cell + 2, dim)).astype(np.float32))
    emb = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 50_000):
        ids = np.arange(s, min(s + 50_000, n))
        row, col = ids // side, ids % side
        u, v = row / smooth_cell, col / smooth_cell
        r0, c0 = np.floor(u).astype(int), np.floor(v).astype(int)
        fu, fv = (u - r0)[:, None], (v - c0)[:, None]
        smooth = ((1 - fu) * (1 - fv) * lattice[r0, c0] + (1 - fu) * fv * lattice[r0, c0 + 1]
                  + fu * (1 - fv) * lattice[r0 + 1, c0] + fu * fv * lattice[r0 + 1, c0 + 1])
        land = class_vectors[class_map[row // class_cell, col // class_cell]]
        detail = _unit(rng.standard_normal((ids.size, dim)).astype(np.float32))
        emb[ids] = _unit(land + 0.8 * _unit(smooth) + 0.6 * detail)
    return emb


DISTRIBUTIONS = {"blob": blob_embeddings, "spatial": spatial_embeddings, "iid": iid_embeddings}


def synthetic_index(n: int, dim: int, cfg: TileIndexConfig, seed: int = 0, distribution: str = "blob") -> TileIndex:
    """``n`` float16 unit embeddings of ``distribution`` on a square grid of tile centres (UTM zone 31N)."""
    emb = DISTRIBUTIONS[distribution](n, dim, np.random.default_rng(seed))
    side = int(np.ceil(np.sqrt(n)))
    tiles = {f: np.zeros(n, dtype=np.float32) for f in TILE_FIELDS}
    tiles["utm_east_m"] = 400_000.0 + STRIDE_M * (np.arange(n) % side)
    tiles["utm_north_m"] = 5_700_000.0 + STRIDE_M * (np.arange(n) // side)
    manifest = {"utm_zone": {"number": 31, "north": True}, "tile_size_m": 100.0, "tile_px": 256}
    return TileIndex(emb, tiles, manifest, None, cfg)


def timed(fn, queries: np.ndarray) -> tuple[list, dict[str, float]]:
    """Results and latency per query: wall clock, and this process's CPU time (one faiss thread: on an idle
    core the two agree; on a shared machine the CPU time leaves out the time spent waiting for a core)."""
    out, ms, cpu_ms = [], [], []
    for q in queries:
        start, cpu = time.perf_counter(), time.process_time()
        out.append(fn(q))
        ms.append((time.perf_counter() - start) * 1e3)
        cpu_ms.append((time.process_time() - cpu) * 1e3)
    ms_arr, cpu_arr = np.asarray(ms), np.asarray(cpu_ms)
    return out, {"p50_ms": float(np.percentile(ms_arr, 50)), "p95_ms": float(np.percentile(ms_arr, 95)),
                 "mean_ms": float(ms_arr.mean()), "cpu_p50_ms": float(np.percentile(cpu_arr, 50)),
                 "cpu_p95_ms": float(np.percentile(cpu_arr, 95))}


def noisy_queries(index: TileIndex, n_queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(tile ids, queries): each a tile embedding + a domain gap, cosine ~0.8 to its tile."""
    picks = rng.integers(0, len(index), n_queries)
    dim = index.embed_dim
    gap = 0.75 * _unit(rng.standard_normal((n_queries, dim)).astype(np.float32))
    return picks, _unit(index.embeddings[picks].astype(np.float32) + gap)


def sweep(index: TileIndex, store: str, nprobes: list[int], rerank: int, queries: np.ndarray,
          exact: list) -> dict:
    """Build one IVF store, then latency and recall@10 (against ``exact``) at each nprobe."""
    base = TileIndexConfig(faiss_store=store, faiss_rerank=rerank, bucket_m=250.0)
    index.cfg = base
    start = time.perf_counter()
    index.build_faiss()
    build_s = time.perf_counter() - start
    rows = {}
    for nprobe in nprobes:
        index.cfg = TileIndexConfig(faiss_store=store, faiss_rerank=rerank, bucket_m=250.0, faiss_nprobe=nprobe)
        approx, timing = timed(lambda q: index.search(q, 10, method="faiss"), queries)
        recall = float(np.mean([len(set(a.ids) & set(e.ids)) / 10 for a, e in zip(approx, exact, strict=True)]))
        rows[str(nprobe)] = {**timing, "recall_at_10": recall}
    return {"store": store, "rerank": rerank, "nlist": int(index._faiss.nlist), "build_s": build_s,
            "memory_mib": index.memory_bytes()["faiss"] / 2**20, "by_nprobe": rows}


def bench_size(n: int, dim: int, n_queries: int, nprobes: list[int], distribution: str, rerank: int,
               stores: list[str]) -> dict:
    index = synthetic_index(n, dim, TileIndexConfig(bucket_m=250.0), distribution=distribution)
    rng = np.random.default_rng(1)
    picks, queries = noisy_queries(index, n_queries, rng)
    index.search(queries[0], 10, method="exact")  # builds the exact flat index outside the timing
    exact, t_exact = timed(lambda q: index.search(q, 10, method="exact"), queries)
    source_top1 = float(np.mean([e.ids[0] == p for e, p in zip(exact, picks, strict=True)]))
    ivf = [sweep(index, store, nprobes, rerank if store == "fastscan" else 0, queries, exact) for store in stores]
    lat, lon = utm_to_latlon(index.tiles["utm_east_m"][picks], index.tiles["utm_north_m"][picks], index.zone)
    priors = iter(zip(np.atleast_1d(lat), np.atleast_1d(lon), strict=True))
    radius, t_radius = timed(lambda q: index.search(q, 10, prior_latlon=next(priors), radius_m=300.0), queries)
    mem = index.memory_bytes()
    return {"tiles": n, "dim": dim, "distribution": distribution, "queries": n_queries, "exact": t_exact,
            "exact_top1_is_source_tile": source_top1, "ivf": ivf, "radius_300m_exact": t_radius,
            "radius_candidates_mean": float(np.mean([r.candidates for r in radius])),
            "memory_mib": {"embeddings": mem["embeddings"] / 2**20, "tiles": mem["tiles"] / 2**20,
                           "exact_flat": mem["exact_flat"] / 2**20},
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def print_table(rows: list[dict]) -> None:
    print(f"{'tiles':>9} {'dist':<8}{'store':<15}{'nprobe':>7}{'exact p50':>11}{'p50':>9}{'p95':>9}{'cpu p50':>9}"
          f"{'recall@10':>10}{'MiB':>8}{'build s':>9}")
    for r in rows:
        for ivf in r["ivf"]:
            name = ivf["store"] + (f"+rr{ivf['rerank']}" if ivf["rerank"] else "")
            for nprobe, f in ivf["by_nprobe"].items():
                print(f"{r['tiles']:>9} {r['distribution']:<8}{name:<15}{nprobe:>7}{r['exact']['p50_ms']:>9.2f}ms"
                      f"{f['p50_ms']:>7.2f}ms{f['p95_ms']:>7.2f}ms{f['cpu_p50_ms']:>7.2f}ms{f['recall_at_10']:>10.3f}"
                      f"{ivf['memory_mib']:>8.1f}{ivf['build_s']:>9.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="comma-separated tile counts (default 10k,100k,1M; --quick: 10k,100k)")
    parser.add_argument("--distributions", default="blob,spatial,iid", help=f"of {sorted(DISTRIBUTIONS)}")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--nprobe", default="16,32,64", help="comma-separated IVF lists probed per query")
    parser.add_argument("--rerank", type=int, default=300, help="fast-scan shortlist re-scored exactly")
    parser.add_argument("--stores", default="fp16,fastscan", help="IVF stores to compare (fp16: the old default)")
    parser.add_argument("--threads", type=int, default=1,
                        help="faiss threads (1: the other core runs the models, as on board)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tile_index.json")
    args = parser.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else sizes
    rows = []
    for n in sizes:
        for distribution in args.distributions.split(","):
            rows.append(bench_size(n, args.dim, args.queries, [int(v) for v in args.nprobe.split(",")],
                                   distribution, args.rerank, args.stores.split(",")))
            print_table(rows[-1:])
    print("\nall sizes:")
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "tile_index", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
                   f"{args.threads} faiss thread(s), shared 2-core machine, "
                   f"load average {os.getloadavg()[0]:.1f} at the end",
        "embeddings": "synthetic float16 unit vectors (no trained retrieval model): " + ", ".join(
            f"{d}: {(DISTRIBUTIONS[d].__doc__ or d).strip().splitlines()[0]}" for d in args.distributions.split(",")),
        "queries": "tile embedding + a unit-noise domain gap of 0.75 (cosine ~0.8 to the tile)",
        "quick": args.quick, "results": rows,
    }, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
