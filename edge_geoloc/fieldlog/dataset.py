"""Field logs -> the pair dataset (``edge_geoloc.pairs``, docs/interfaces.md) that ``edge-geoloc adapt`` reads.

For every logged camera frame: the *coarse* position is the centre of the ``/geoloc/patch_ref`` logged at that
frame (what the runtime itself believed before the frame), or else the ``/gnss/fix`` track interpolated to the
frame's stamp; the aerial patch is cut from the GeoTIFF around it, north-up; the heading is the nearest
``/heading``; the height above ground is ``/altitude_agl`` interpolated to the frame's stamp, and the horizontal
field of view comes from the latest ``/camera/camera_info`` (``2 * atan(width / (2 * fx))``) unless overridden.
Both stay null when the log lacks them (scale-aligned readers then reject the set): they are never invented.
There is no ground truth: that is the point of self-supervised adaptation. The query JPEG is copied byte for
byte (no second compression).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.fieldlog import messages as m
from edge_geoloc.fieldlog.reader import LogRecord, ReadReport, read_log
from edge_geoloc.geo import GeoRaster, PatchGeoref, RasterError
from edge_geoloc.interop.camera_info import camera_info_msg_to_intrinsics
from edge_geoloc.interop.factory import ConversionError
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
    no_altitude_agl: int = 0
    no_hfov: int = 0
    outside_map: int = 0
    undecodable_jpeg: int = 0
    truncated_logs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _SideChannels:
    """GNSS track, headings, heights above ground, camera fields of view and patch references of one log,
    sorted by stamp."""

    gnss_s: np.ndarray
    gnss_latlon: np.ndarray  # (N, 2)
    heading_s: np.ndarray
    heading_rad: np.ndarray
    patch_refs: dict[int, dict]  # stamp in microseconds -> decoded JSON
    altitude_s: np.ndarray
    altitude_agl_m: np.ndarray  # (M, 1)
    hfov_s: np.ndarray
    hfov_deg: np.ndarray


def _read_side_channels(log_path: Path, report: FromLogsReport) -> _SideChannels:
    gnss, headings, refs, altitudes, hfovs = [], [], {}, [], []
    read = ReadReport()
    topics = [m.GNSS_FIX, m.HEADING, m.PATCH_REF, m.ALTITUDE_AGL, m.CAMERA_INFO]
    for rec in read_log(log_path, topics=topics, report=read):
        if rec.topic == m.GNSS_FIX and int(rec.msg.status.status) != FixStatus.NO_FIX:
            gnss.append((header_stamp_s(rec.msg), rec.msg.latitude, rec.msg.longitude))
        elif rec.topic == m.HEADING:
            headings.append((rec.stamp_s, rec.msg.data))
        elif rec.topic == m.ALTITUDE_AGL and np.isfinite(rec.msg.data):
            altitudes.append((rec.stamp_s, rec.msg.data))
        elif rec.topic == m.CAMERA_INFO:
            hfovs += _camera_info_hfov(rec)
        elif rec.topic == m.PATCH_REF:
            refs[round(rec.stamp_s * 1e6)] = json.loads(rec.msg.data)
    report.truncated_logs += read.truncated_files
    g, h, a, f = (np.array(sorted(rows), dtype=np.float64).reshape(-1, cols)
                  for rows, cols in ((gnss, 3), (headings, 2), (altitudes, 2), (hfovs, 2)))
    return _SideChannels(g[:, 0], g[:, 1:], h[:, 0], h[:, 1], refs, a[:, 0], a[:, 1:], f[:, 0], f[:, 1])


def _camera_info_hfov(rec: LogRecord) -> list[tuple[float, float]]:
    """[(stamp_s, hfov_deg)] of a ``/camera/camera_info`` record, [] (with a warning) when it has no usable K."""
    try:
        return [(header_stamp_s(rec.msg), camera_info_msg_to_intrinsics(rec.msg).hfov_deg)]
    except ConversionError as err:
        log.warning("%s at %.3f s ignored: %s", m.CAMERA_INFO, rec.stamp_s, err)
        return []


def interpolate_series(stamps_s: np.ndarray, values: np.ndarray, t_s: float, max_gap_s: float) -> np.ndarray | None:
    """The (K,) row of ``values`` (N, K) at ``t_s``: linear between the samples around it when they are at most
    ``2*max_gap_s`` apart, else the nearest sample within ``max_gap_s``; None when none is close enough."""
    if len(stamps_s) == 0:
        return None
    i = int(np.searchsorted(stamps_s, t_s))
    if 0 < i < len(stamps_s) and stamps_s[i] - stamps_s[i - 1] <= 2 * max_gap_s:
        w = (t_s - stamps_s[i - 1]) / max(stamps_s[i] - stamps_s[i - 1], 1e-12)
        return (1 - w) * values[i - 1] + w * values[i]
    nearest = min((j for j in (i - 1, i) if 0 <= j < len(stamps_s)), key=lambda j: abs(stamps_s[j] - t_s))
    if abs(stamps_s[nearest] - t_s) <= max_gap_s:
        return values[nearest]
    return None


def interpolate_track(stamps_s: np.ndarray, latlon: np.ndarray, t_s: float, max_gap_s: float) -> tuple | None:
    """(lat, lon) at ``t_s`` from the track (:func:`interpolate_series`); None when no fix is close enough."""
    row = interpolate_series(stamps_s, latlon, t_s, max_gap_s)
    return None if row is None else (float(row[0]), float(row[1]))


def _altitude_agl(side: _SideChannels, t_s: float, max_gap_s: float) -> float | None:
    row = interpolate_series(side.altitude_s, side.altitude_agl_m, t_s, max_gap_s)
    return None if row is None else float(row[0])


def _hfov(side: _SideChannels, t_s: float) -> float | None:
    """The field of view of the last ``/camera/camera_info`` at or before ``t_s`` (the first one for frames
    before it: intrinsics are logged once per session and on change)."""
    if len(side.hfov_s) == 0:
        return None
    i = max(int(np.searchsorted(side.hfov_s, t_s, side="right")) - 1, 0)
    return float(side.hfov_deg[i])


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
    max_altitude_gap_s: float = 1.0
    hfov_deg: float | None = None  # overrides the logged camera info


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
            heading_rad: float | None, lat: float, lon: float, scale: tuple[float | None, float | None]) -> None:
        sample_id = f"{self.count:06d}"
        (self.out_dir / "query" / f"{sample_id}.jpg").write_bytes(jpeg)
        cv2.imwrite(str(self.out_dir / "aerial" / f"{sample_id}.png"), cv2.cvtColor(aerial_rgb, cv2.COLOR_RGB2BGR))
        line = {"id": sample_id, "query": f"query/{sample_id}.jpg", "aerial": f"aerial/{sample_id}.png",
                "stamp_s": stamp_s, "heading_rad": heading_rad, "coarse_lat_deg": lat, "coarse_lon_deg": lon,
                "aerial_georef": _georef_json(georef), "altitude_agl_m": scale[0], "hfov_deg": scale[1]}
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
                   coarse[0], coarse[1], _scale(side, stamp_s, opts, report))
        report.samples += 1


def _scale(side: _SideChannels, t_s: float, opts: _Options, report: FromLogsReport) -> tuple:
    """(altitude_agl_m, hfov_deg) of a frame, each None (and counted) when the log does not say."""
    altitude = _altitude_agl(side, t_s, opts.max_altitude_gap_s)
    hfov = opts.hfov_deg if opts.hfov_deg is not None else _hfov(side, t_s)
    report.no_altitude_agl += altitude is None
    report.no_hfov += hfov is None
    return altitude, hfov


def build_pairs_from_logs(logs: str | Path | list[str | Path], out_dir: str | Path, ortho: str | Path | None = None,
                          aerial_size_m: float | None = None, aerial_px: int | None = None,
                          query_kind: str = "drone", max_gnss_gap_s: float = 1.0, max_heading_gap_s: float = 0.5,
                          min_valid_fraction: float = 0.9, every_n: int = 1, coarse: str = "auto",
                          max_altitude_gap_s: float = 1.0, hfov_deg: float | None = None) -> FromLogsReport:
    """Write the pair dataset of one or more field logs (session folders, bag folders or .mcap files).

    ``hfov_deg`` replaces the logged ``/camera/camera_info`` field of view for every sample (a log without it).
    """
    if query_kind not in QUERY_KINDS or coarse not in COARSE_SOURCES or every_n < 1:
        raise LogDatasetError(f"query_kind must be one of {QUERY_KINDS}, coarse one of {COARSE_SOURCES}, "
                              f"every_n >= 1 (got {query_kind!r}, {coarse!r}, {every_n})")
    if hfov_deg is not None and not 0.0 < hfov_deg < 180.0:
        raise LogDatasetError(f"hfov_deg must be in (0, 180) degrees, got {hfov_deg}")
    log_paths = [Path(p) for p in ([logs] if isinstance(logs, (str, Path)) else logs)]
    report = FromLogsReport()
    sides = [_read_side_channels(p, report) for p in log_paths]
    raster_path, size_m, px = _resolve_geometry(sides, ortho, aerial_size_m, aerial_px)
    opts = _Options(size_m, px, max_gnss_gap_s, max_heading_gap_s, min_valid_fraction, coarse, max_altitude_gap_s,
                    hfov_deg)
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
