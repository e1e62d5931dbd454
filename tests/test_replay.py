"""Replay: flight folder -> pipeline -> trajectory CSV / GeoJSON / error table; pacing; the two CLIs end to end
with tiny real ONNX models (thumbnail retrieval, normalised cross-correlation localizer) and their sidecars."""

from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_pipeline import AERIAL_M, ORIGIN, QUERY_M, TemplateLocalizer, runtime_cfg
from test_tile_index import ThumbnailEncoder, make_ortho
from torch import nn

from edge_geoloc.geo import GeoRaster
from edge_geoloc.runtime import index_cli, replay_cli
from edge_geoloc.runtime.config import TileIndexConfig
from edge_geoloc.runtime.pipeline import Pipeline
from edge_geoloc.runtime.replay import FlightError, read_flight, replay, write_outputs
from edge_geoloc.runtime.tile_build import build_tile_index
from edge_geoloc.runtime.tile_index import TileIndex
from edge_geoloc.sensors.nmea_writer import format_epoch
from edge_geoloc.types import CovarianceType, GnssFix, diagonal_covariance

EPOCH_S = 1_750_000_000.0  # NMEA carries UTC: the flight's stamps are on the same clock


def write_flight(root, ortho, frames: int = 16, rate_hz: float = 2.0, jump=(6, 10), seed: int = 0):
    """A straight flight over the fixture ortho: frames (60 m nadir crops), truth.csv, gnss.nmea with a 40 m
    multipath jump between frames ``jump[0]`` and ``jump[1]``."""
    rng = np.random.default_rng(seed)
    (root / "frames").mkdir(parents=True)
    truth_rows, nmea = [], []
    with GeoRaster(ortho) as raster:
        for i in range(frames):
            t = EPOCH_S + i / rate_hz
            east, north = -80.0 + 6.0 * i, -30.0 + 3.0 * i
            lat, lon, alt = ORIGIN.from_enu(east, north, 100.0)
            image = raster.read_around_latlon(lat, lon, QUERY_M, 64).image
            cv2.imwrite(str(root / "frames" / f"{i:06d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            truth_rows.append([t, lat, lon, alt, east, north, 100.0, 0.0, math.pi / 2])
            bias = 40.0 if jump[0] <= i < jump[1] else 0.0
            g_lat, g_lon, g_alt = ORIGIN.from_enu(east + bias + rng.normal(0, 2), north + rng.normal(0, 2), 100.0)
            fix = GnssFix(t, g_lat, g_lon, g_alt, diagonal_covariance(2.5, 2.5, 5.0), CovarianceType.DIAGONAL_KNOWN,
                          num_satellites=9, hdop=0.9)
            nmea += format_epoch(fix)
    with (root / "truth.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stamp_s", "lat_deg", "lon_deg", "alt_m", "east_m", "north_m", "alt_agl_m", "heading_rad",
                         "pitch_rad"])
        writer.writerows(truth_rows)
    (root / "gnss.nmea").write_text("\n".join(nmea) + "\n$GPGGA,garbage*00\n")
    (root / "flight.json").write_text(json.dumps({"camera_rate_hz": rate_hz}))
    return root


def rejected(flight) -> int:
    return sum(n for key, n in flight.gnss_reader.items() if key.startswith("rejected_"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay_world")
    ortho = root / "area.tif"
    make_ortho(ortho, size_m=400.0)
    flight = write_flight(root / "flight", ortho)
    return ortho, flight


def test_read_flight_parses_frames_nmea_and_truth(world):
    _, flight_dir = world
    flight = read_flight(flight_dir)
    assert len(flight.frame_paths) == 16 and flight.frame_stamps_s[1] - flight.frame_stamps_s[0] == 0.5
    assert len(flight.gnss) == 16 and flight.gnss[0].stamp_s == pytest.approx(EPOCH_S, abs=0.01)
    assert rejected(flight) == 1  # the garbage line was rejected and counted


def test_read_flight_errors_say_what_is_missing(tmp_path):
    with pytest.raises(FlightError, match="no .jpg/.png frames"):
        read_flight(tmp_path)


def test_replay_writes_trajectory_geojson_and_error_table(world, tmp_path):
    ortho, flight_dir = world
    cfg = TileIndexConfig(tile_size_m=QUERY_M, stride_m=30.0, tile_px=64)
    index = build_tile_index([ortho], ThumbnailEncoder(), cfg, out_dir=tmp_path / "index")
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg(), origin=ORIGIN)
    result = replay(pipe, read_flight(flight_dir))
    errors = write_outputs(result, tmp_path / "out", 0.3, has_truth=True)
    assert len(result.rows) == 16 and result.counters["frames"] == 16
    assert errors["fused"]["p95_m"] < errors["gnss_only"]["p95_m"]  # the 40 m jump is gated out
    assert errors["fused"]["max_m"] < 10.0 < errors["gnss_only"]["max_m"]
    assert errors["visual_only"]["coverage"] > 0.8
    geo = json.loads((tmp_path / "out" / "trajectory.geojson").read_text())
    names = {f["properties"]["name"] for f in geo["features"]}
    assert names == {"truth", "gnss", "fused", "visual_fixes"}
    lon, lat = geo["features"][0]["geometry"]["coordinates"][0]
    assert (lat, lon) == pytest.approx(ORIGIN.from_enu(-80.0, -30.0, 100.0)[:2], abs=1e-6)
    with (tmp_path / "out" / "trajectory.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 16


def test_paced_replay_drops_frames_it_cannot_reach(world, tmp_path):
    """Real-time pacing with a pipeline slower than the camera drops frames, counted, as on board."""
    ortho, flight_dir = world
    cfg = TileIndexConfig(tile_size_m=QUERY_M, stride_m=30.0, tile_px=64)
    index = build_tile_index([ortho], ThumbnailEncoder(), cfg)
    now = [0.0]

    class SlowLocalizer(TemplateLocalizer):
        def locate(self, query_rgb, aerial_rgb):
            now[0] += 1.2  # 1.2 s of simulated compute for 0.5 s between frames
            return super().locate(query_rgb, aerial_rgb)

    pipe = Pipeline(ThumbnailEncoder(), SlowLocalizer(), index, runtime_cfg(localize_top=1), origin=ORIGIN)
    result = replay(pipe, read_flight(flight_dir), speed=1.0, clock=lambda: now[0],
                    sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert pipe.counters.dropped_frames > 5 and len(result.rows) + pipe.counters.dropped_frames == 16
    assert pipe.counters.gnss_fixes + pipe.counters.gnss_rejected == 16  # dropped frames' GNSS is still fused


class ThumbnailNet(nn.Module):
    """Zero-mean 8x8 grey thumbnail, L2-normalised: ONNX input ``image``, output ``embedding``."""

    def forward(self, image):
        grey = image.mean(dim=1, keepdim=True)
        thumb = F.adaptive_avg_pool2d(grey, 8).flatten(1)
        thumb = thumb - thumb.mean(dim=1, keepdim=True)
        return thumb / thumb.norm(dim=1, keepdim=True).clamp_min(1e-6)


class NccNet(nn.Module):
    """Normalised cross-correlation of the query over the aerial patch, softmax over all aerial pixels."""

    def __init__(self, temperature: float = 0.03) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, query, aerial):
        q = query.mean(dim=1, keepdim=True)
        a = aerial.mean(dim=1, keepdim=True)
        q0 = q - q.mean()
        n = q.shape[-1] * q.shape[-2]
        ones = torch.ones_like(q0)
        corr = F.conv2d(a, q0)
        var = F.conv2d(a * a, ones) - F.conv2d(a, ones) ** 2 / n
        ncc = corr / torch.sqrt(var.clamp_min(1e-6) * (q0 * q0).sum())
        pad = q.shape[-1] // 2
        logits = F.pad(ncc / self.temperature, (pad, pad - 1, pad, pad - 1), value=-1e4)
        heat = torch.softmax(logits.flatten(1), dim=1).reshape(1, a.shape[-2], a.shape[-1])
        return heat, torch.zeros(1, 2, a.shape[-2], a.shape[-1])


def export_tiny(model: nn.Module, path, kind: str, inputs: dict[str, int], outputs: dict[str, tuple],
                extra_prep: dict[str, dict] | None = None) -> None:
    from edge_geoloc.export.sidecar import (
        InputPreprocessing,
        ModelDescription,
        TensorSpec,
        build_sidecar,
        write_sidecar,
    )

    example = tuple(torch.rand(1, 3, s, s) for s in inputs.values())
    torch.onnx.export(model, example, str(path), input_names=list(inputs), output_names=list(outputs),
                      opset_version=17, dynamo=False)
    desc = ModelDescription(
        kind=kind, model_name=type(model).__name__, model_kwargs={},
        inputs=tuple(TensorSpec(n, (1, 3, s, s)) for n, s in inputs.items()),
        outputs=tuple(TensorSpec(n, shape) for n, shape in outputs.items()),
        preprocessing={n: InputPreprocessing((s, s), mean=(0, 0, 0), std=(1, 1, 1), **(extra_prep or {}).get(n, {}))
                       for n, s in inputs.items()})
    write_sidecar(path, build_sidecar(desc, opset=17))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    export_tiny(ThumbnailNet(), root / "retrieval.onnx", "retrieval", {"image": 64}, {"embedding": (1, 64)})
    export_tiny(NccNet(), root / "localizer.onnx", "localizer", {"query": 32, "aerial": 64},
                {"heatmap": (1, 64, 64), "orientation": (1, 2, 64, 64)})
    return root


def test_build_index_and_run_clis_end_to_end(world, models, tmp_path, capsys):
    ortho, flight_dir = world
    index_args = ["--set", f"index.tile_size_m={QUERY_M}", "--set", "index.stride_m=30", "--set", "index.tile_px=64"]
    assert index_cli.main(["--ortho", str(ortho), "--model", str(models / "retrieval.onnx"),
                           "--out", str(tmp_path / "index"), *index_args]) == 0
    index = TileIndex.load(tmp_path / "index")
    assert len(index) == 13 * 13 - 1  # the far corner tile is only 44% inside the map
    assert len(index.manifest["model"]["sha256"]) == 64
    out = tmp_path / "replay"
    assert replay_cli.main(["--flight", str(flight_dir), "--models", str(models), "--index", str(tmp_path / "index"),
                            "--out", str(out), "--set", f"pipeline.aerial_size_m={AERIAL_M}",
                            "--set", "pipeline.localize_top=3"]) == 0
    printed = capsys.readouterr().out
    assert "fused" in printed and "gnss_only" in printed
    errors = json.loads((out / "errors.json").read_text())
    assert errors["fused"]["p95_m"] < errors["gnss_only"]["p95_m"]
    assert (out / "config.yaml").is_file() and (out / "summary.json").is_file()


def test_run_cli_reports_missing_models_clearly(world, tmp_path, capsys):
    _, flight_dir = world
    assert replay_cli.main(["--flight", str(flight_dir), "--models", str(tmp_path)]) == 2
    assert "no retrieval model" in capsys.readouterr().out


def test_build_index_cli_reports_a_model_without_sidecar(world, tmp_path, capsys):
    ortho, _ = world
    (tmp_path / "retrieval.onnx").write_bytes(b"not a model")
    assert index_cli.main(["--ortho", str(ortho), "--model", str(tmp_path / "retrieval.onnx"),
                           "--out", str(tmp_path / "index")]) == 2
    assert "sidecar" in capsys.readouterr().out


def test_reads_a_flight_written_by_the_simulator(tmp_path):
    """The sim's flight folder (rendered frames, its own NMEA writer, UNIX stamps) replays as recorded."""
    from edge_geoloc.sim import generate_area
    from edge_geoloc.sim.flight import FlightConfig, simulate_flight

    area = generate_area("target", seed=3, size_m=300.0)
    simulate_flight(area, tmp_path / "flight", FlightConfig(duration_s=4.0, frame_rate_hz=2.0, width_px=64,
                                                            height_px=64))
    flight = read_flight(tmp_path / "flight")
    assert len(flight.frame_paths) == 9 and rejected(flight) == 0
    assert len(flight.gnss) == 21 and flight.gnss[0].stamp_s == pytest.approx(flight.frame_stamps_s[0], abs=0.01)
    assert flight.gnss[0].covariance_type == CovarianceType.KNOWN  # GST sigmas
    index = build_tile_index([tmp_path / "flight" / "area" / "ortho.tif"], ThumbnailEncoder(),
                             TileIndexConfig(tile_size_m=QUERY_M, stride_m=30.0, tile_px=64))
    pipe = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg())
    errors = write_outputs(replay(pipe, flight), tmp_path / "out", 0.3, has_truth=True)
    assert errors["gnss_only"]["max_m"] < 15.0 and errors["fused"]["max_m"] < 15.0


class RecordingPipeline:
    """Records the frames the replay hands over; a real pipeline (GNSS only) answers."""

    def __init__(self, index) -> None:
        self.inner, self.frames = Pipeline(ThumbnailEncoder(), TemplateLocalizer(), index, runtime_cfg()), []

    @property
    def counters(self):
        return self.inner.counters

    def drop_frame(self) -> None:
        self.inner.drop_frame()

    def add_gnss(self, fix) -> bool:
        return self.inner.add_gnss(fix)

    def process(self, frame, fix):
        self.frames.append(frame)
        return self.inner.process(frame, fix)


def test_replay_fills_heading_and_altitude_from_the_measurements_never_the_truth(world, tmp_path):
    """Frames carry the flight's measured heading / height (sensors.csv, or frames.csv columns of a recorded
    flight); truth.csv is only for scoring. The camera's field of view comes from flight.json."""
    from dataclasses import replace

    from edge_geoloc.runtime.config import CameraConfig, RuntimeConfig
    from edge_geoloc.runtime.replay import measured_attitude, with_flight_camera
    from edge_geoloc.sim import generate_area
    from edge_geoloc.sim.flight import FlightConfig, simulate_flight

    ortho, plain_dir = world
    index = build_tile_index([ortho], ThumbnailEncoder(), TileIndexConfig(tile_size_m=QUERY_M, stride_m=60.0,
                                                                          tile_px=32))
    area = generate_area("target", seed=3, size_m=300.0)
    sim = simulate_flight(area, tmp_path / "flight", FlightConfig(duration_s=3.0, frame_rate_hz=2.0, width_px=32,
                                                                  height_px=32, hfov_deg=70.0))
    flight = read_flight(tmp_path / "flight")
    pipe = RecordingPipeline(index)
    replay(pipe, flight)
    headings = np.array([f.heading_rad for f in pipe.frames])
    altitudes = np.array([f.altitude_agl_m for f in pipe.frames])
    np.testing.assert_allclose(headings, sim.sensors["heading_rad"], atol=1e-9)
    np.testing.assert_allclose(altitudes, sim.sensors["altitude_agl_m"], atol=1e-9)
    assert not np.allclose(headings, sim.truth["heading_rad"]) and not np.allclose(altitudes, sim.truth["alt_agl_m"])
    assert with_flight_camera(RuntimeConfig(), flight).camera.hfov_deg == 70.0
    assert with_flight_camera(RuntimeConfig(camera=CameraConfig(hfov_deg=50.0)), flight).camera.hfov_deg == 50.0

    recorded = tmp_path / "recorded"  # a recorded flight: frames.csv with measured columns, no flight.json
    (recorded / "frames").mkdir(parents=True)
    for i, path in enumerate(flight.frame_paths[:3]):
        (recorded / "frames" / f"{i:06d}.jpg").write_bytes(path.read_bytes())
    (recorded / "frames.csv").write_text("index,stamp_s,heading_rad,altitude_agl_m\n0,10.0,6.2,40.0\n"
                                         "1,10.5,0.1,41.0\n2,11.0,,\n")
    pipe = RecordingPipeline(index)
    replay(pipe, read_flight(recorded))
    assert [f.altitude_agl_m for f in pipe.frames] == [40.0, 41.0, None]  # an empty cell stays missing
    assert [f.heading_rad for f in pipe.frames] == [pytest.approx(6.2), pytest.approx(0.1), None]
    assert measured_attitude(replace(flight, sensors={"stamp_s": np.array([0.0, 1.0]), "heading_rad": np.array(
        [6.2, 0.2])}), 0.5)[0] == pytest.approx((6.2 + 0.2 + 2 * math.pi) / 2 % (2 * math.pi))  # across the wrap
    pipe = RecordingPipeline(index)
    replay(pipe, read_flight(plain_dir), max_frames=3)  # truth.csv has headings and heights, no measurements
    assert all(f.heading_rad is None and f.altitude_agl_m is None for f in pipe.frames)


def test_run_cli_applies_the_artifacts_alignment_and_counts_frames_without_heading(world, tmp_path, capsys):
    """A north-up, scale-aligned localizer artifact: its sidecar keeps the declaration, the runtime reads it,
    and a flight without measured headings gets no visual fix (counted), GNSS only."""
    from edge_geoloc.runtime.backends import load_backend
    from edge_geoloc.runtime.pipeline import BackendLocalizer

    ortho, flight_dir = world
    models = tmp_path / "models"
    models.mkdir()
    export_tiny(ThumbnailNet(), models / "retrieval.onnx", "retrieval", {"image": 64}, {"embedding": (1, 64)})
    export_tiny(NccNet(), models / "localizer.onnx", "localizer", {"query": 32, "aerial": 64},
                {"heatmap": (1, 64, 64), "orientation": (1, 2, 64, 64)},
                {"query": {"alignment": "north_up", "ground_size_m": 30.0}, "aerial": {"ground_size_m": AERIAL_M}})
    localizer = BackendLocalizer(load_backend(models / "localizer.onnx", kind="onnxruntime"))
    assert localizer.alignment.north_up and localizer.alignment.ground_size_m == 30.0
    assert localizer.alignment.out_px == 32 and localizer.aerial_size_m == AERIAL_M
    out = tmp_path / "replay"
    assert replay_cli.main(["--flight", str(flight_dir), "--models", str(models), "--out", str(out), "--ortho",
                            str(ortho), "--set", f"index.tile_size_m={QUERY_M}", "--set", "index.tile_px=64"]) == 0
    counters = json.loads((out / "summary.json").read_text())["counters"]
    assert counters["extra"]["missing_heading"] == 16 and counters["visual_fixes"] == 0
    assert counters["gnss_fixes"] > 0


def damaged_copy(flight_dir, dst):
    """The fixture flight with field damage: frame 3 corrupt, frame 5 missing, garbage NMEA, and a sensors file
    with a garbage row and a 4 s hole (frames 8, 9 and 10 are more than 1 s from any measurement)."""
    import shutil

    shutil.copytree(flight_dir, dst)
    (dst / "frames" / "000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (dst / "frames" / "000005.jpg").unlink()
    with (dst / "gnss.nmea").open("a") as f:
        f.write("$GPGGA,,,,,,,,*7F\n\x00\x01\xfe binary noise\n$GPRMC,123519,A,4807.038,N\n")
    rows = [f"{EPOCH_S + i / 2.0},{0.1 * i},100.0" for i in (*range(6), *range(13, 16))]
    (dst / "sensors.csv").write_text("stamp_s,heading_rad,altitude_agl_m\n" + "\n".join(rows[:3])
                                     + "\nnot-a-number,0.3,x\n" + "\n".join(rows[3:]) + "\n")
    meta = json.loads((dst / "flight.json").read_text())
    (dst / "flight.json").write_text(json.dumps({**meta, "sensors": {"file": "sensors.csv"}}))
    return dst


def test_bad_frames_garbage_nmea_and_sensor_gaps_are_counted_and_skipped(world, tmp_path):
    ortho, flight_dir = world
    flight = read_flight(damaged_copy(flight_dir, tmp_path / "damaged"))
    assert flight.input.frames_missing == 1 and flight.input.csv_rows_bad == 1 and len(flight.frame_paths) == 15
    assert rejected(flight) >= 3  # the fixture's garbage line and the new ones
    index = build_tile_index([ortho], ThumbnailEncoder(), TileIndexConfig(tile_size_m=QUERY_M, stride_m=30.0,
                                                                           tile_px=64))
    pipe = RecordingPipeline(index)
    result = replay(pipe, flight)
    assert len(result.rows) == 14 and result.counters["input"]["frames_corrupt"] == 1
    assert result.counters["input"]["sensor_gaps"] == 3
    headings = {round(f.stamp_s - EPOCH_S, 1): f.heading_rad for f in pipe.frames}
    assert [headings[t] for t in (4.0, 4.5, 5.0)] == [None, None, None]  # not interpolated across the hole
    assert headings[3.0] == pytest.approx(0.6) and headings[6.0] == pytest.approx(1.2)
    assert pipe.counters.gnss_fixes + pipe.counters.gnss_rejected == 16  # the bad frame's GNSS still fused


def test_run_cli_finishes_a_damaged_flight_and_stops_on_an_unusable_one(world, models, tmp_path, capsys):
    ortho, flight_dir = world
    damaged = damaged_copy(flight_dir, tmp_path / "damaged")
    index_args = ["--set", f"index.tile_size_m={QUERY_M}", "--set", "index.stride_m=30", "--set", "index.tile_px=64"]
    assert index_cli.main(["--ortho", str(ortho), "--model", str(models / "retrieval.onnx"),
                           "--out", str(tmp_path / "index"), *index_args]) == 0
    run = ["--models", str(models), "--index", str(tmp_path / "index"), "--set", f"pipeline.aerial_size_m={AERIAL_M}"]
    assert replay_cli.main(["--flight", str(damaged), "--out", str(tmp_path / "out"), *run]) == 0
    printed = capsys.readouterr().out
    assert "replayed 14 frames" in printed
    assert '"frames_corrupt": 1' in printed and '"frames_missing": 1' in printed and '"sensor_gaps": 3' in printed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counters"]["input"]["csv_rows_bad"] == 1
    (damaged / "flight.json").write_text("{broken")
    assert replay_cli.main(["--flight", str(damaged), *run]) == 2
    message = capsys.readouterr().out.strip()
    assert message.startswith("edge-geoloc run: ") and "flight.json is not valid JSON" in message
    assert len(message.splitlines()) == 1
