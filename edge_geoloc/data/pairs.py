"""Pair datasets: a query image + the aerial patch around a coarse position (``edge_geoloc.pairs`` format).

What the localizer trains on, what field logs turn into and what ``edge-geoloc adapt --target DIR`` reads
(layout in docs/interfaces.md). Ground truth (``gt_row``, ``gt_col``, pixels of the aerial patch) is optional
and is only ever read when the caller asks for it with ``read_ground_truth=True``; the adaptation pipeline
never does, and :func:`read_pairs` with ``read_ground_truth=False`` builds records from a whitelist of keys
that does not contain them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from edge_geoloc.data.images import read_image_rgb
from edge_geoloc.geo import PatchGeoref
from edge_geoloc.geo.view_alignment import align_query_north_up, align_query_scale

log = logging.getLogger(__name__)

FORMAT_NAME = "edge_geoloc.pairs"
FORMAT_VERSION = 1
QUERY_KINDS = ("drone", "ground_pano", "ground_pinhole")


class PairDatasetError(ValueError):
    """A pair dataset folder is missing, of another format, or has malformed samples."""


@dataclass(frozen=True)
class PairRecord:
    """One sample's metadata; ``gt_row``/``gt_col`` stay None unless ground truth was asked for."""

    id: str
    query: str
    aerial: str
    stamp_s: float
    heading_rad: float | None
    coarse_lat_deg: float
    coarse_lon_deg: float
    aerial_georef: PatchGeoref
    gt_row: float | None = None
    gt_col: float | None = None
    altitude_agl_m: float | None = None  # drone height above ground, if known (for scale alignment)
    hfov_deg: float | None = None  # the query camera's horizontal field of view, if known


@dataclass(frozen=True)
class PairDatasetInfo:
    """Contents of ``dataset.json``."""

    query_kind: str
    aerial_size_m: float
    aerial_px: int
    count: int
    sources: tuple[str, ...] = ()


def georef_to_json(georef: PatchGeoref) -> dict[str, Any]:
    return {"crs_epsg": georef.crs_epsg, "affine": list(georef.affine), "height_px": georef.height_px,
            "width_px": georef.width_px}


def georef_from_json(data: dict[str, Any]) -> PatchGeoref:
    return PatchGeoref(int(data["crs_epsg"]), tuple(float(v) for v in data["affine"]), int(data["height_px"]),
                       int(data["width_px"]))


class PairWriter:
    """Write a pair dataset sample by sample; :meth:`close` (or the ``with`` block) writes ``dataset.json``."""

    def __init__(self, root: str | Path, query_kind: str, aerial_size_m: float, aerial_px: int,
                 sources: tuple[str, ...] = ()) -> None:
        if query_kind not in QUERY_KINDS:
            raise PairDatasetError(f"query_kind must be one of {QUERY_KINDS}, got {query_kind!r}")
        self.root = Path(root)
        (self.root / "query").mkdir(parents=True, exist_ok=True)
        (self.root / "aerial").mkdir(parents=True, exist_ok=True)
        self.info = PairDatasetInfo(query_kind, float(aerial_size_m), int(aerial_px), 0, tuple(sources))
        self._lines = (self.root / "samples.jsonl").open("w", encoding="utf-8")
        self.count = 0

    def __enter__(self) -> PairWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, sample_id: str, query_rgb: np.ndarray, aerial_rgb: np.ndarray, georef: PatchGeoref,
            coarse_lat_deg: float, coarse_lon_deg: float, heading_rad: float | None = None, stamp_s: float = 0.0,
            gt_row: float | None = None, gt_col: float | None = None, altitude_agl_m: float | None = None,
            hfov_deg: float | None = None) -> None:
        """Write one sample's images and metadata line (ground truth only if given)."""
        if aerial_rgb.shape[:2] != (georef.height_px, georef.width_px):
            raise PairDatasetError(f"aerial image {aerial_rgb.shape[:2]} does not match its georef size")
        query_rel, aerial_rel = f"query/{sample_id}.jpg", f"aerial/{sample_id}.png"
        cv2.imwrite(str(self.root / query_rel), cv2.cvtColor(query_rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(self.root / aerial_rel), cv2.cvtColor(aerial_rgb, cv2.COLOR_RGB2BGR))
        line = {"id": sample_id, "query": query_rel, "aerial": aerial_rel, "stamp_s": float(stamp_s),
                "heading_rad": None if heading_rad is None else float(heading_rad),
                "coarse_lat_deg": float(coarse_lat_deg), "coarse_lon_deg": float(coarse_lon_deg),
                "aerial_georef": georef_to_json(georef)}
        if altitude_agl_m is not None and hfov_deg is not None:
            line.update(altitude_agl_m=float(altitude_agl_m), hfov_deg=float(hfov_deg))
        if gt_row is not None and gt_col is not None:
            line.update(gt_row=float(gt_row), gt_col=float(gt_col))
        self._lines.write(json.dumps(line) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._lines.closed:
            return
        self._lines.close()
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "query_kind": self.info.query_kind,
                "aerial_size_m": self.info.aerial_size_m, "aerial_px": self.info.aerial_px, "count": self.count,
                "sources": list(self.info.sources)}
        (self.root / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_info(root: str | Path) -> PairDatasetInfo:
    """Read and check ``dataset.json``."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise PairDatasetError(f"{path} not found: {root} is not a pair dataset (make one with "
                               "`edge-geoloc dataset` from field logs or edge_geoloc.data.pairs.PairWriter)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise PairDatasetError(f"{path}: format {meta.get('format')!r} v{meta.get('version')} is not "
                               f"{FORMAT_NAME!r} v{FORMAT_VERSION}")
    if meta.get("query_kind") not in QUERY_KINDS:
        raise PairDatasetError(f"{path}: query_kind must be one of {QUERY_KINDS}")
    return PairDatasetInfo(meta["query_kind"], float(meta["aerial_size_m"]), int(meta["aerial_px"]),
                           int(meta["count"]), tuple(meta.get("sources", ())))


_REQUIRED = ("id", "query", "aerial", "coarse_lat_deg", "coarse_lon_deg", "aerial_georef")


def _record(line: dict[str, Any], read_ground_truth: bool) -> PairRecord:
    missing = [k for k in _REQUIRED if k not in line]
    if missing:
        raise KeyError(f"missing key(s) {missing}")
    heading = line.get("heading_rad")
    gt = {key: float(line[key]) for key in ("altitude_agl_m", "hfov_deg") if line.get(key) is not None}
    if read_ground_truth and line.get("gt_row") is not None:
        gt.update(gt_row=float(line["gt_row"]), gt_col=float(line["gt_col"]))
    return PairRecord(id=str(line["id"]), query=str(line["query"]), aerial=str(line["aerial"]),
                      stamp_s=float(line.get("stamp_s", 0.0)), heading_rad=None if heading is None else float(heading),
                      coarse_lat_deg=float(line["coarse_lat_deg"]), coarse_lon_deg=float(line["coarse_lon_deg"]),
                      aerial_georef=georef_from_json(line["aerial_georef"]), **gt)


def read_pairs(root: str | Path, read_ground_truth: bool = False) -> tuple[PairDatasetInfo, list[PairRecord]]:
    """Read a pair dataset; malformed lines are logged and counted, not fatal (all malformed is fatal)."""
    root = Path(root)
    info = read_info(root)
    records, rejected = [], 0
    with (root / "samples.jsonl").open(encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                records.append(_record(json.loads(text), read_ground_truth))
            except (KeyError, ValueError, TypeError) as err:
                rejected += 1
                log.warning("%s/samples.jsonl line %d rejected: %s", root, number, err)
    if not records:
        raise PairDatasetError(f"{root}/samples.jsonl has no valid samples ({rejected} rejected)")
    if rejected:
        log.warning("%s: %d of %d samples rejected", root, rejected, rejected + len(records))
    return info, records


class PairDataset(torch.utils.data.Dataset):
    """Torch view of a pair dataset: normalised query/aerial tensors, heading and (optionally) the target pixel.

    Items: ``query (3, Hq, Wq)``, ``aerial (3, A, A)``, ``heading_rad`` (NaN when unknown, or 0 after north-up
    alignment), ``index``; ``rowcol (2,)`` in pixels of the resized aerial image only with ground truth.
    ``query_ground_size_m``: also align the query's scale (:func:`align_query_scale`; needs each sample's
    ``altitude_agl_m`` and ``hfov_deg``); :func:`dataset_for_model` sets it from the model.
    """

    def __init__(self, root: str | Path, query_size: tuple[int, int], aerial_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], align_north_up: bool = True,
                 read_ground_truth: bool = False, indices: list[int] | None = None, cache: bool = True,
                 query_ground_size_m: float | None = None) -> None:
        self.root = Path(root)
        self.info, records = read_pairs(root, read_ground_truth)
        self.records = records if indices is None else [records[i] for i in indices]
        self.query_size, self.aerial_size = tuple(query_size), int(aerial_size)
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.std = np.asarray(std, dtype=np.float32) * 255.0
        self.align = align_north_up and self.info.query_kind in ("drone", "ground_pano")
        self.read_ground_truth = read_ground_truth
        self.query_ground_size_m = query_ground_size_m
        if query_ground_size_m is not None:
            _check_scale_metadata(self.root, self.records)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def _to_tensor(self, image: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
        if image.shape[:2] != size_hw:
            image = cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(((image.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1).copy())

    def _images(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        rec = self.records[i]
        query = read_image_rgb(self.root / rec.query)
        if self.align and rec.heading_rad is not None:
            query = align_query_north_up(query, rec.heading_rad, self.info.query_kind)
        if self.query_ground_size_m is not None:
            query = align_query_scale(query, rec.altitude_agl_m, rec.hfov_deg, self.query_ground_size_m,
                                      self.query_size[0])
        pair = (self._to_tensor(query, self.query_size),
                self._to_tensor(read_image_rgb(self.root / rec.aerial), (self.aerial_size, self.aerial_size)))
        if self._cache is not None:
            self._cache[i] = pair
        return pair

    def heading_for_model(self, rec: PairRecord) -> float:
        if rec.heading_rad is None:
            return float("nan")
        return 0.0 if self.align else rec.heading_rad

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        query, aerial = self._images(i)
        item = {"query": query, "aerial": aerial, "heading_rad": self.heading_for_model(rec), "index": i}
        if self.read_ground_truth:
            if rec.gt_row is None:
                raise PairDatasetError(f"{self.root}: sample {rec.id} has no gt_row/gt_col; it cannot be used "
                                       "for supervised training or evaluation")
            scale = self.aerial_size / rec.aerial_georef.height_px
            item["rowcol"] = torch.tensor([rec.gt_row * scale, rec.gt_col * scale], dtype=torch.float32)
        return item

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rowcol (N, 2)`` in resized aerial pixels, ``m_per_px (N,)`` at that size, true ``heading_rad (N,)``.

        Only for validation/evaluation datasets opened with ``read_ground_truth=True``.
        """
        if not self.read_ground_truth:
            raise PairDatasetError("this dataset was opened without ground truth (read_ground_truth=False)")
        rowcol, m_per_px, heading = [], [], []
        for rec in self.records:
            if rec.gt_row is None:
                raise PairDatasetError(f"{self.root}: sample {rec.id} has no gt_row/gt_col")
            scale = self.aerial_size / rec.aerial_georef.height_px
            rowcol.append((rec.gt_row * scale, rec.gt_col * scale))
            m_per_px.append(rec.aerial_georef.m_per_px / scale)
            heading.append(np.nan if rec.heading_rad is None else rec.heading_rad)
        return np.asarray(rowcol), np.asarray(m_per_px), np.asarray(heading)


def _check_scale_metadata(root: Path, records: list[PairRecord]) -> None:
    missing = [r.id for r in records if r.altitude_agl_m is None or r.hfov_deg is None]
    if missing:
        raise PairDatasetError(f"{root}: {len(missing)} sample(s) (e.g. {missing[0]}) have no altitude_agl_m/hfov_deg; "
                               "a scale-aligned localizer (query ground_size_m) needs both: re-write the pairs with "
                               "them (PairWriter.add(..., altitude_agl_m=, hfov_deg=))")


def dataset_for_model(root: str | Path, model: Any, read_ground_truth: bool = False, align_north_up: bool = True,
                      **kwargs: Any) -> PairDataset:
    """A :class:`PairDataset` with the model's input sizes, normalisation and query alignment (north-up, and
    scale when the model records ``query_ground_size_m``)."""
    return PairDataset(root, model.query_size, model.aerial_size, model.mean, model.std,
                       align_north_up=align_north_up, read_ground_truth=read_ground_truth,
                       query_ground_size_m=getattr(model, "query_ground_size_m", None), **kwargs)


@dataclass(frozen=True)
class DronePairConfig:
    """Synthetic drone pairs from the sim: nadir views at random poses, patches around a noisy coarse fix."""

    count: int = 200
    aerial_size_m: float = 64.0
    aerial_px: int = 128
    query_px: int = 128
    hfov_deg: float = 60.0
    alt_agl_m: tuple[float, float] = (35.0, 50.0)
    coarse_error_m: float = 16.0  # the coarse fix is uniform in a disc of this radius around the truth
    margin_m: float = 60.0  # keep poses this far inside the area edge
    photometric: bool = True
    condition: str | None = None  # capture condition of the drone views (the patches are the map); None: same
    random_conditions: int = 0  # > 0: views cycle through this many random conditions instead (training data)


def write_synthetic_drone_pairs(area: Any, root: str | Path, cfg: DronePairConfig, seed: int,
                                with_ground_truth: bool = True) -> Path:
    """Render ``cfg.count`` drone-view / aerial-patch pairs of a sim ``Area`` into a pair dataset at ``root``."""
    from edge_geoloc.sim.camera import DronePose, PinholeCamera
    from edge_geoloc.sim.render import render_drone_view

    half = 0.5 * area.size_m - cfg.margin_m
    if half <= 0:
        raise ValueError(f"area of {area.size_m} m is too small for margin_m={cfg.margin_m}")
    rng = np.random.default_rng(seed)
    camera = PinholeCamera(cfg.query_px, cfg.query_px, cfg.hfov_deg)
    seen = _captures(area, cfg, seed)
    source = f"sim:{area.style_name}:seed{area.seed}:pairs{seed}"
    with PairWriter(root, "drone", cfg.aerial_size_m, cfg.aerial_px, (source,)) as writer:
        for i in range(cfg.count):
            east, north = rng.uniform(-half, half, size=2)
            pose = DronePose(float(east), float(north), float(rng.uniform(*cfg.alt_agl_m)),
                             float(rng.uniform(0, 2 * math.pi)))
            query = render_drone_view(seen[i % len(seen)], pose, camera, rng=rng if cfg.photometric else None)
            radius, angle = cfg.coarse_error_m * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
            c_east, c_north = east + radius * math.sin(angle), north + radius * math.cos(angle)
            aerial, georef = area.aerial_patch(c_east, c_north, cfg.aerial_size_m, cfg.aerial_px)
            gt_row, gt_col = georef.latlon_to_pixel(*area.local_to_latlon(east, north))
            lat, lon = area.local_to_latlon(c_east, c_north)
            gt = {"gt_row": gt_row, "gt_col": gt_col} if with_ground_truth else {}
            writer.add(f"{i:06d}", query, aerial, georef, float(lat), float(lon), pose.heading_rad,
                       stamp_s=float(i), altitude_agl_m=pose.alt_agl_m, hfov_deg=cfg.hfov_deg, **gt)
    return Path(root)


def _captures(area: Any, cfg: DronePairConfig, seed: int) -> list[Any]:
    """The capture areas the views are rendered from: one per random condition, or the configured one."""
    from edge_geoloc.sim.area import capture_area
    from edge_geoloc.sim.conditions import sample_condition

    if cfg.random_conditions <= 0:
        return [capture_area(area, cfg.condition)]
    rng = np.random.default_rng([seed, 7919])
    return [capture_area(area, sample_condition(rng, f"random{seed}_{k}")) for k in range(cfg.random_conditions)]
