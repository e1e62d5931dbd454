"""``edge-geoloc build-index``: cut geo-referenced tiles from orthophotos, embed them, write an index folder.

Example::

    edge-geoloc build-index --ortho area.tif --model models/retrieval.onnx --out index/ \\
        --set index.tile_size_m=120 --set index.stride_m=60
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from edge_geoloc.config import ConfigError, add_config_arguments, config_from_args, save_config

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-geoloc build-index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ortho", nargs="+", required=True, type=Path, help="GeoTIFF / COG orthophoto(s)")
    parser.add_argument("--model", required=True, type=Path,
                        help="retrieval model, satellite branch (export with view=satellite unless the model shares "
                             "weights): ONNX (+ .json sidecar), TensorRT engine, or .safetensors checkpoint")
    parser.add_argument("--out", required=True, type=Path, help="index folder to write")
    parser.add_argument("--faiss", action="store_true", help="also build and save the approximate (IVF) index")
    add_config_arguments(parser, default_config=None)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from edge_geoloc.runtime.config import RuntimeConfig

    try:
        cfg = config_from_args(RuntimeConfig, args)
    except ConfigError as err:
        print(f"edge-geoloc build-index: {err}")
        return 2
    missing = [str(p) for p in args.ortho if not p.is_file()]
    if missing:
        print(f"edge-geoloc build-index: orthophoto(s) not found: {', '.join(missing)}")
        return 2
    from edge_geoloc.artifacts import ArtifactError
    from edge_geoloc.geo import RasterError
    from edge_geoloc.runtime.tile_index import TileIndexError

    try:
        index = build(args.ortho, args.model, args.out, cfg, args.faiss)
    except (ArtifactError, RasterError, TileIndexError, ValueError) as err:
        print(f"edge-geoloc build-index: {err}")
        return 2
    memory = index.memory_bytes()
    print(f"index: {len(index)} tiles x {index.embed_dim} dims (float16) in {args.out}; "
          f"embeddings {memory['embeddings'] / 2**20:.1f} MiB, faiss {memory['faiss'] / 2**20:.1f} MiB")
    return 0


def build(orthos: list[Path], model: Path, out: Path, cfg, with_faiss: bool = False):
    """Load the retrieval backend, build the index over ``orthos`` and save it (with the resolved config)."""
    from tqdm import tqdm

    from edge_geoloc.runtime.backends import load_backend
    from edge_geoloc.runtime.pipeline import BackendEncoder
    from edge_geoloc.runtime.tile_build import build_tile_index

    backend = load_backend(model, kind=cfg.backend.kind, device=cfg.backend.device)
    view = backend.sidecar.get("export", {}).get("view")
    if view == "drone":
        log.warning("%s is the drone branch; tiles are satellite views: unless the model shares weights, export "
                    "the satellite branch (`edge-geoloc export ... --set view=satellite`) for the index", model.name)
    model_info = {"path": str(model), "name": backend.sidecar.get("model", {}).get("name"),
                  "sha256": backend.sidecar.get("sha256", {}).get("artifact"), "backend": backend.name}
    start = time.perf_counter()
    with tqdm(desc="embedding tiles", unit="tile") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        index = build_tile_index(orthos, BackendEncoder(backend), cfg.index, model_info, out, progress)
    if with_faiss:
        index.build_faiss()
        index.save(out)
    save_config(cfg.index, out / "config.yaml")
    log.info("built %d tiles in %.1f s", len(index), time.perf_counter() - start)
    return index
