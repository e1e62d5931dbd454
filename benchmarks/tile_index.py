"""Tile index benchmark: top-10 search latency and recall@10 of the faiss IVF index against exact search.

Synthetic embeddings (no trained model is needed to measure scale): clustered unit vectors (neighbouring
tiles look alike, as real ones do) stored as float16, tile centres on a 50 m grid. Per size it measures, in one
run and side by side: exact search over all tiles, faiss IVF (fp16 scalar quantiser) over all tiles, and exact
search restricted to a 300 m radius around a prior (the normal on-board case), plus memory and build time.
The IVF index has sqrt(N) lists; recall@10 and latency are given for each ``--nprobe``.

    python benchmarks/tile_index.py            # 10k, 100k, 1M tiles, 256-D
    python benchmarks/tile_index.py --quick    # 10k, 100k
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


def synthetic_index(n: int, dim: int, cfg: TileIndexConfig, seed: int = 0) -> TileIndex:
    """``n`` clustered float16 unit embeddings on a square grid of tile centres (UTM zone 31N)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 50, 1), dim)).astype(np.float32)
    emb = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        block = centres[rng.integers(0, len(centres), m)] + 0.5 * rng.standard_normal((m, dim)).astype(np.float32)
        emb[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    side = int(np.ceil(np.sqrt(n)))
    tiles = {f: np.zeros(n, dtype=np.float32) for f in TILE_FIELDS}
    tiles["utm_east_m"] = 400_000.0 + STRIDE_M * (np.arange(n) % side)
    tiles["utm_north_m"] = 5_700_000.0 + STRIDE_M * (np.arange(n) // side)
    manifest = {"utm_zone": {"number": 31, "north": True}, "tile_size_m": 100.0, "tile_px": 256}
    return TileIndex(emb, tiles, manifest, None, cfg)


def timed(fn, queries: np.ndarray) -> tuple[list, dict[str, float]]:
    out, ms = [], []
    for q in queries:
        start = time.perf_counter()
        out.append(fn(q))
        ms.append((time.perf_counter() - start) * 1e3)
    ms_arr = np.asarray(ms)
    return out, {"p50_ms": float(np.percentile(ms_arr, 50)), "p95_ms": float(np.percentile(ms_arr, 95)),
                 "mean_ms": float(ms_arr.mean())}


def bench_size(n: int, dim: int, n_queries: int, nprobes: list[int]) -> dict:
    cfg = TileIndexConfig(faiss_store="fp16", bucket_m=250.0)
    index = synthetic_index(n, dim, cfg)
    rng = np.random.default_rng(1)
    picks = rng.integers(0, n, n_queries)
    queries = index.embeddings[picks].astype(np.float32) + 0.05 * rng.standard_normal((n_queries, dim))
    start = time.perf_counter()
    index.build_faiss()
    build_s = time.perf_counter() - start
    index.search(queries[0], 10, method="exact")  # builds the exact flat index outside the timing
    exact, t_exact = timed(lambda q: index.search(q, 10, method="exact"), queries)
    faiss_rows = {}
    for nprobe in nprobes:
        index.cfg = TileIndexConfig(faiss_store="fp16", bucket_m=250.0, faiss_nprobe=nprobe)
        approx, t_faiss = timed(lambda q: index.search(q, 10, method="faiss"), queries)
        recall = float(np.mean([len(set(a.ids) & set(e.ids)) / 10 for a, e in zip(approx, exact, strict=True)]))
        faiss_rows[str(nprobe)] = {**t_faiss, "recall_at_10": recall}
    lat, lon = utm_to_latlon(index.tiles["utm_east_m"][picks], index.tiles["utm_north_m"][picks], index.zone)
    priors = iter(zip(np.atleast_1d(lat), np.atleast_1d(lon), strict=True))
    radius, t_radius = timed(lambda q: index.search(q, 10, prior_latlon=next(priors), radius_m=300.0), queries)
    mem = index.memory_bytes()
    return {"tiles": n, "dim": dim, "queries": n_queries, "nlist": int(index._faiss.nlist), "faiss_build_s": build_s,
            "exact": t_exact, "faiss_by_nprobe": faiss_rows, "radius_300m_exact": t_radius,
            "radius_candidates_mean": float(np.mean([r.candidates for r in radius])),
            "memory_mib": {k: v / 2**20 for k, v in mem.items()},
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def print_table(rows: list[dict]) -> None:
    print(f"{'tiles':>9}{'nprobe':>7}{'exact p50':>11}{'faiss p50':>11}{'speed-up':>10}{'recall@10':>11}"
          f"{'r300 p50':>10}{'emb MiB':>9}{'faiss MiB':>10}{'build s':>9}")
    for r in rows:
        for nprobe, f in r["faiss_by_nprobe"].items():
            speedup = r["exact"]["p50_ms"] / f["p50_ms"]
            print(f"{r['tiles']:>9}{nprobe:>7}{r['exact']['p50_ms']:>9.2f}ms{f['p50_ms']:>9.2f}ms{speedup:>9.1f}x"
                  f"{f['recall_at_10']:>11.3f}{r['radius_300m_exact']['p50_ms']:>8.2f}ms"
                  f"{r['memory_mib']['embeddings']:>9.1f}{r['memory_mib']['faiss']:>10.1f}{r['faiss_build_s']:>9.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--nprobe", default="16,64", help="comma-separated IVF lists probed per query")
    parser.add_argument("--threads", type=int, default=1,
                        help="faiss threads (1: the other core runs the models, as on board)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tile_index.json")
    args = parser.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    rows = []
    for n in sizes:
        rows.append(bench_size(n, args.dim, args.queries, [int(v) for v in args.nprobe.split(",")]))
        print_table(rows[-1:])
    print("\nall sizes:")
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "tile_index", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
                   f"{args.threads} faiss thread(s), shared 2-core machine, "
                   f"load average {os.getloadavg()[0]:.1f} at the end",
        "embeddings": "synthetic clustered unit vectors, float16", "quick": args.quick, "results": rows,
    }, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
