"""Field logs -> the pair dataset (``edge_geoloc.pairs``, docs/interfaces.md) that ``edge-geoloc adapt`` reads.

For every logged camera frame: the *coarse* position is the centre of the ``/geoloc/patch_ref`` logged at that
frame (what the runtime itself believed before the frame), or else the ``/gnss/fix`` track interpolated to the
frame's stamp; the aerial patch is cut from the GeoTIFF around it, north-up; the heading is the nearest
``/heading``. There is no ground truth: that is the point of self-supervised adaptation. The query JPEG is
copied byte for byte (no second compression).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.fieldlog import messages as m
from edge_geoloc.fieldlog.reader import ReadReport, read_log
from edge_geoloc.geo import GeoRaster, PatchGeoref, RasterError
from edge_geoloc.interop.stamps import header_stamp_s
from edge_geoloc.types import FixStatus

log = logging.getLogger(__name__)

QUERY_KINDS = ("drone", "ground_pano", "ground_pinhole")
COARSE_SOURCES = ("auto", "patch_ref", "gnss")


class LogDatasetError(ValueError):
    """The logs cannot make a dataset (nothing usable in them, no map, an output folder in the way)."""


@dataclass
class FromLogsReport:
    frames: int = 0
    samples: int = 0
    no_coarse_position: int = 0
    outside_map: int = 0
    undecodable_jpeg: int = 0
    truncated_logs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _SideChannels:
    """GNSS track, headings and patch references of one log, sorted by stamp."""

    gnss_s: np.ndarray
    gnss_latlon: np.ndarray  # (N, 2)
    heading_s: np.ndarray
    heading_rad: np.ndarray
    patch_refs: dict[int, dict]  # stamp in microseconds -> decoded JSON


def _read_side_channels(log_path: Path, report: FromLogsReport) -> _SideChannels:
    gnss, headings, refs = [], [], {}
    read = ReadReport()
    for rec in read_log(log_path, topics=[m.GNSS_FIX, m.HEADING, m.PATCH_REF], report=read):
        if rec.topic == m.GNSS_FIX and int(rec.msg.status.status) != FixStatus.NO_FIX:
            gnss.append((header_stamp_s(rec.msg), rec.msg.latitude, rec.msg.longitude))
        elif rec.topic == m.HEADING:
            headings.append((rec.stamp_s, rec.msg.data))
        elif rec.topic == m.PATCH_REF:
            refs[round(rec.stamp_s * 1e6)] = json.loads(rec.msg.data)
    report.truncated_logs += read.truncated_files
    g = np.array(sorted(gnss), dtype=np.float64).reshape(-1, 3)
    h = np.array(sorted(headings), dtype=np.float64).reshape(-1, 2)
    return _SideChannels(g[:, 0], g[:, 1:], h[:, 0], h[:, 1], refs)


def interpolate_track(stamps_s: np.ndarray, latlon: np.ndarray, t_s: float, max_gap_s: float) -> tuple | None:
    """(lat, lon) at ``t_s``: linear between the fixes around it when they are at most ``2*max_gap_s`` apart,
    else the nearest fix within ``max_gap_s``; None when the track has no fix close enough."""
    if len(stamps_s) == 0:
        return None
    i = int(np.searchsorted(stamps_s, t_s))
    if 0 < i < len(stamps_s) and stamps_s[i] - stamps_s[i - 1] <= 2 * max_gap_s:
        w = (t_s - stamps_s[i - 1]) / max(stamps_s[i] - stamps_s[i - 1], 1e-12)
        lat, lon = (1 - w) * latlon[i - 1] + w * latlon[i]
        return float(lat), float(lon)
    nearest = min((j for j in (i - 1, i) if 0 <= j < len(stamps_s)), key=lambda j: abs(stamps_s[j] - t_s))
    if abs(stamps_s[nearest] - t_s) <= max_gap_s:
        return float(latlon[nearest, 0]), float(latlon[nearest, 1])
    return None


def _nearest_heading(side: _SideChannels, t_s: float, max_gap_s: float) -> float | None:
    if len(side.heading_s) == 0:
        return None
    j = int(np.argmin(np.abs(side.heading_s - t_s)))
    return float(side.heading_rad[j]) if abs(side.heading_s[j] - t_s) <= max_gap_s else None


@dataclass(frozen=True)
class _Options:
    aerial_size_m: float
    aerial_px: int
    max_gnss_gap_s: float
    max_heading_gap_s: float
    min_valid_fraction: float
    coarse: str


def _coarse(side: _SideChannels, t_s: float, opts: _Options) -> tuple[float, float] | None:
    ref = side.patch_refs.get(round(t_s * 1e6)) if opts.coarse in ("auto", "patch_ref") else None
    if ref is not None:
        return float(ref["center_lat_deg"]), float(ref["center_lon_deg"])
    if opts.coarse == "patch_ref":
        return None
    return interpolate_track(side.gnss_s, side.gnss_latlon, t_s, opts.max_gnss_gap_s)


def _georef_json(georef: PatchGeoref) -> dict:
    return {"crs_epsg": georef.crs_epsg, "affine": list(georef.affine), "height_px": georef.height_px,
            "width_px": georef.width_px}


class _SampleWriter:
    def __init__(self, out_dir: Path) -> None:
        if (out_dir / "dataset.json").exists() or (out_dir / "samples.jsonl").exists():
            raise LogDatasetError(f"{out_dir} already holds a dataset; choose another --out or delete it first")
        for sub in ("query", "aerial"):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.lines = (out_dir / "samples.jsonl").open("w", encoding="utf-8")
        self.count = 0

    def add(self, jpeg: bytes, aerial_rgb: np.ndarray, georef: PatchGeoref, stamp_s: float,
            heading_rad: float | None, lat: float, lon: float) -> None:
        sample_id = f"{self.count:06d}"
        (self.out_dir / "query" / f"{sample_id}.jpg").write_bytes(jpeg)
        cv2.imwrite(str(self.out_dir / "aerial" / f"{sample_id}.png"), cv2.cvtColor(aerial_rgb, cv2.COLOR_RGB2BGR))
        line = {"id": sample_id, "query": f"query/{sample_id}.jpg", "aerial": f"aerial/{sample_id}.png",
                "stamp_s": stamp_s, "heading_rad": heading_rad, "coarse_lat_deg": lat, "coarse_lon_deg": lon,
                "aerial_georef": _georef_json(georef)}
        self.lines.write(json.dumps(line) + "\n")
        self.count += 1


def _resolve_geometry(sides: list[_SideChannels], ortho: str | Path | None, aerial_size_m: float | None,
                      aerial_px: int | None) -> tuple[Path, float, int]:
    """Raster, patch size and pixels: from the arguments, else from the logged patch references."""
    ref = next((r for side in sides for r in side.patch_refs.values()), None)
    raster = Path(ortho) if ortho is not None else (Path(ref["raster"]) if ref else None)
    if raster is None or not raster.is_file():
        where = f"{raster} (named in the log's {m.PATCH_REF})" if raster else "no --ortho and no patch reference"
        raise LogDatasetError(f"no map raster: {where}; pass --ortho AREA.tif")
    size_m = aerial_size_m if aerial_size_m is not None else (ref or {}).get("size_m")
    px = aerial_px if aerial_px is not None else (ref or {}).get("px")
    if not size_m or not px or size_m <= 0 or px <= 0:
        raise LogDatasetError("aerial patch size unknown: pass --aerial-size-m and --aerial-px (positive)")
    if ref and ortho is not None and Path(ref["raster"]).resolve() != raster.resolve():
        log.warning("--ortho %s is not the raster the logs reference (%s)", raster, ref["raster"])
    return raster, float(size_m), int(px)


def _add_log(writer: _SampleWriter, raster: GeoRaster, log_path: Path, side: _SideChannels, opts: _Options,
             every_n: int, report: FromLogsReport) -> None:
    for k, rec in enumerate(read_log(log_path, topics=[m.CAMERA])):
        report.frames += 1
        if k % every_n:
            continue
        stamp_s = header_stamp_s(rec.msg)
        coarse = _coarse(side, stamp_s, opts)
        if coarse is None:
            report.no_coarse_position += 1
            continue
        jpeg = bytes(rec.msg.data)
        if cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_8) is None:
            report.undecodable_jpeg += 1
            continue
        try:
            patch = raster.read_around_latlon(coarse[0], coarse[1], opts.aerial_size_m, opts.aerial_px)
        except (RasterError, ValueError):
            patch = None
        if patch is None or patch.valid_fraction < opts.min_valid_fraction:
            report.outside_map += 1
            continue
        writer.add(jpeg, patch.image, patch.georef, stamp_s, _nearest_heading(side, stamp_s, opts.max_heading_gap_s),
                   coarse[0], coarse[1])
        report.samples += 1


def build_pairs_from_logs(logs: str | Path | list[str | Path], out_dir: str | Path, ortho: str | Path | None = None,
                          aerial_size_m: float | None = None, aerial_px: int | None = None,
                          query_kind: str = "drone", max_gnss_gap_s: float = 1.0, max_heading_gap_s: float = 0.5,
                          min_valid_fraction: float = 0.9, every_n: int = 1, coarse: str = "auto") -> FromLogsReport:
    """Write the pair dataset of one or more field logs (session folders, bag folders or .mcap files)."""
    if query_kind not in QUERY_KINDS or coarse not in COARSE_SOURCES or every_n < 1:
        raise LogDatasetError(f"query_kind must be one of {QUERY_KINDS}, coarse one of {COARSE_SOURCES}, "
                              f"every_n >= 1 (got {query_kind!r}, {coarse!r}, {every_n})")
    log_paths = [Path(p) for p in ([logs] if isinstance(logs, (str, Path)) else logs)]
    report = FromLogsReport()
    sides = [_read_side_channels(p, report) for p in log_paths]
    raster_path, size_m, px = _resolve_geometry(sides, ortho, aerial_size_m, aerial_px)
    opts = _Options(size_m, px, max_gnss_gap_s, max_heading_gap_s, min_valid_fraction, coarse)
    out_dir = Path(out_dir)
    writer = _SampleWriter(out_dir)
    with GeoRaster(raster_path) as raster, writer.lines:
        for log_path, side in zip(log_paths, sides, strict=True):
            _add_log(writer, raster, log_path, side, opts, every_n, report)
    if report.samples == 0:
        (out_dir / "samples.jsonl").unlink()
        raise LogDatasetError(f"no usable frame in {', '.join(map(str, log_paths))}: {report}")
    meta = {"format": "edge_geoloc.pairs", "version": 1, "query_kind": query_kind, "aerial_size_m": size_m,
            "aerial_px": px, "count": report.samples, "sources": [str(p.resolve()) for p in log_paths],
            "raster": str(raster_path.resolve())}
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("pair dataset %s: %d samples from %d frames (%s)", out_dir, report.samples, report.frames, report)
    return report
