"""GNSS simulation, NMEA formatting (checked with pynmea2) and flight folders."""

from __future__ import annotations

import csv
import math

import numpy as np
import pynmea2
import pytest

from edge_geoloc.config import ConfigError, load_config
from edge_geoloc.geo import haversine_m
from edge_geoloc.sensors.nmea import with_checksum
from edge_geoloc.sim import generate_area
from edge_geoloc.sim.flight import FlightConfig, load_flight, simulate_flight
from edge_geoloc.sim.gnss import (
    GnssNoiseConfig,
    format_gga,
    format_gst,
    format_rmc,
    gnss_preset,
    simulate_gnss_errors,
)
from edge_geoloc.sim.layout import ROAD

T0 = 1717236000.0  # 2024-06-01 10:00:00 UTC


def test_checksum_golden_value():
    # the classic example sentence from the NMEA 0183 documentation
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    assert format_gga(T0, 48.1173, 11.5167, 545.4, 1, 8, 0.9).startswith("$GPGGA,")
    assert with_checksum(body) == f"${body}*47"  # the writer the sim uses


def test_sentences_round_trip_through_pynmea2():
    lat, lon = -33.8567844, 151.2152967
    gga = pynmea2.parse(format_gga(T0 + 12.34, lat, lon, 58.25, 1, 11, 0.9), check=True)
    assert gga.timestamp.strftime("%H%M%S") == "100012" and gga.gps_qual == 1 and gga.num_sats == "11"
    assert gga.latitude == pytest.approx(lat, abs=1e-8) and gga.longitude == pytest.approx(lon, abs=1e-8)
    assert float(gga.altitude) == 58.25 and float(gga.horizontal_dil) == 0.9
    rmc = pynmea2.parse(format_rmc(T0, lat, lon, 10.0, 271.5), check=True)
    assert rmc.status == "A" and rmc.datestamp.isoformat() == "2024-06-01"
    assert rmc.spd_over_grnd == pytest.approx(10.0 * 3600 / 1852, abs=0.01) and rmc.true_course == 271.5
    gst = pynmea2.parse(format_gst(T0, 1.5, 2.5, 4.0), check=True)
    assert float(gst.std_dev_latitude) == 2.5 and float(gst.std_dev_longitude) == 1.5
    assert float(gst.std_dev_altitude) == 4.0
    void = pynmea2.parse(format_gga(T0, None, None, None, 0, 0, None), check=True)
    assert void.gps_qual == 0 and void.latitude == 0.0
    assert pynmea2.parse(format_rmc(T0, None, None, 0, 0), check=True).status == "V"


def test_error_model_statistics():
    stamps = T0 + np.arange(0, 4000, 0.5)
    cfg = GnssNoiseConfig(white_sigma_m=1.0, bias_sigma_m=2.0, bias_tau_s=20.0)
    track = simulate_gnss_errors(stamps, cfg, np.random.default_rng(0))
    err = track.error_enu_m[:, 0]
    assert np.std(err) == pytest.approx(math.sqrt(1.0 + 4.0), rel=0.15)
    lag = int(20.0 / 0.5)  # bias correlation at one time constant is exp(-1); white noise is uncorrelated
    bias_like = np.corrcoef(err[:-lag], err[lag:])[0, 1]
    assert bias_like == pytest.approx(math.exp(-1) * 4.0 / 5.0, abs=0.12)
    assert np.corrcoef(err[:-1], err[1:])[0, 1] > 0.7
    assert track.valid.all() and not track.events


def test_outages_and_multipath_events():
    stamps = T0 + np.arange(0, 300, 0.2)
    cfg = gnss_preset("urban_multipath", outages=((50.0, 70.0),), multipath_rate_hz=1 / 30)
    track = simulate_gnss_errors(stamps, cfg, np.random.default_rng(1))
    rel = stamps - T0
    assert not track.valid[(rel >= 50) & (rel < 70)].any() and track.valid[rel < 50].all()
    jumps = [e for e in track.events if e["kind"] == "multipath"]
    assert len(jumps) >= 3
    for e in jumps:
        inside = (stamps >= e["start_s"]) & (stamps < e["end_s"])
        jump = math.hypot(e["jump_east_m"], e["jump_north_m"])
        mean_err = np.hypot(*track.error_enu_m[inside, :2].mean(0))
        if jump > 15:
            assert mean_err > 0.5 * jump
    # an over-confident receiver: reported sigma below the true error spread
    assert np.mean(track.sigma_enu_m[:, 0]) < np.std(track.error_enu_m[:, 0])
    with pytest.raises(ConfigError, match="unknown GNSS preset"):
        gnss_preset("mars")


@pytest.fixture(scope="module")
def small_area():
    return generate_area("target", seed=2, size_m=400.0, gsd_m=0.5)


def test_drone_flight_folder(tmp_path, small_area):
    cfg = FlightConfig(duration_s=6.0, frame_rate_hz=1.0, width_px=64, height_px=64, seed=3,
                       gnss=gnss_preset("outage", outages=((2.0, 4.0),), outage_rate_hz=0.0))
    flight = simulate_flight(small_area, tmp_path / "f", cfg)
    assert len(flight.frame_paths) == 7 and all(p.is_file() for p in flight.frame_paths)
    truth = flight.truth
    speed = np.hypot(np.diff(truth["east_m"]), np.diff(truth["north_m"])) / np.diff(truth["stamp_s"])
    assert np.median(speed) == pytest.approx(cfg.speed_mps, rel=0.03) and speed.min() > 0.85 * cfg.speed_mps
    lat, lon = small_area.local_to_latlon(truth["east_m"], truth["north_m"])
    np.testing.assert_allclose(truth["lat_deg"], lat, atol=1e-8)
    lines = flight.nmea_path.read_bytes().decode("ascii").split("\r\n")[:-1]
    parsed = [pynmea2.parse(ln, check=True) for ln in lines]
    ggas = [p for p in parsed if p.sentence_type == "GGA"]
    assert len(ggas) == 31  # 5 Hz over 6 s, both ends included
    rows = list(csv.DictReader((tmp_path / "f" / "gnss.csv").open()))
    for gga, row in zip(ggas, rows, strict=True):
        if row["valid"] == "1":
            err = haversine_m(gga.latitude, gga.longitude, float(row["true_lat_deg"]), float(row["true_lon_deg"]))
            expected = math.hypot(float(row["error_east_m"]), float(row["error_north_m"]))
            assert err == pytest.approx(expected, rel=0.02, abs=0.02)
        else:
            assert gga.gps_qual == 0
    assert [e["kind"] for e in flight.events] == ["outage"]
    again = load_flight(tmp_path / "f")
    assert again.meta["area_dir"] and np.array_equal(again.truth["stamp_s"], truth["stamp_s"])
    simulate_flight(small_area, tmp_path / "g", cfg)  # same config and seed: same bytes
    for name in ("gnss.nmea", "truth.csv", "frames/000003.jpg"):
        assert (tmp_path / "f" / name).read_bytes() == (tmp_path / "g" / name).read_bytes(), name


def test_car_drives_on_roads_and_config_yaml(tmp_path, small_area):
    path = tmp_path / "car.yaml"
    path.write_text("kind: car\nduration_s: 20\nspeed_mps: 8\nframe_rate_hz: 0.5\nwidth_px: 48\nheight_px: 32\n"
                    "hfov_deg: 90\ngnss:\n  rate_hz: 1\n  white_sigma_m: 3.0\n")
    cfg = load_config(FlightConfig, path)
    assert cfg.gnss.white_sigma_m == 3.0 and cfg.kind == "car"
    flight = simulate_flight(small_area, tmp_path / "car", cfg)
    rows, cols = small_area.local_to_pixel(flight.truth["east_m"], flight.truth["north_m"])
    cls = small_area.scene.classes
    near_road = [(cls[max(0, int(r) - 6):int(r) + 7, max(0, int(c) - 6):int(c) + 7] == ROAD).any()
                 for r, c in zip(rows, cols, strict=True)]
    assert all(near_road)
    assert flight.truth["alt_agl_m"][0] == pytest.approx(1.7)
    with pytest.raises(ValueError, match="altitude_agl_m"):
        FlightConfig(altitude_agl_m=-10.0)
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(FlightConfig, None, ["gnss.whte_sigma_m=1"])


def test_flight_records_noisy_heading_and_altitude_measurements(tmp_path, small_area):
    """sensors.csv: what the drone measures itself (compass/IMU heading, baro/lidar height), seeded noise
    around the truth, declared in flight.json; its own random stream leaves frames and GNSS unchanged."""
    cfg = FlightConfig(duration_s=40.0, frame_rate_hz=2.0, width_px=16, height_px=16, seed=5, altitude_agl_m=60.0)
    flight = simulate_flight(small_area, tmp_path / "f", cfg)
    assert flight.meta["sensors"] == {"file": "sensors.csv", "columns": ["stamp_s", "heading_rad", "altitude_agl_m"],
                                      "heading_sigma_deg": 2.0, "altitude_agl_sigma_m": 1.0}
    sensors, truth = flight.sensors, flight.truth
    np.testing.assert_array_equal(sensors["stamp_s"], truth["stamp_s"])
    heading_err = np.degrees(np.angle(np.exp(1j * (sensors["heading_rad"] - truth["heading_rad"]))))
    altitude_err = sensors["altitude_agl_m"] - truth["alt_agl_m"]
    assert len(heading_err) == 81 and 1.4 < heading_err.std() < 2.6 and abs(heading_err.mean()) < 0.8
    assert 0.7 < altitude_err.std() < 1.3 and abs(altitude_err.mean()) < 0.4
    assert ((sensors["heading_rad"] >= 0) & (sensors["heading_rad"] < 2 * math.pi)).all()
    simulate_flight(small_area, tmp_path / "g", cfg)  # same seed: same measurements
    assert (tmp_path / "f" / "sensors.csv").read_bytes() == (tmp_path / "g" / "sensors.csv").read_bytes()
    quiet = simulate_flight(small_area, tmp_path / "q", FlightConfig(**{**cfg.__dict__, "heading_sigma_deg": 0.0,
                                                                        "altitude_sigma_m": 0.0}))
    np.testing.assert_allclose(quiet.sensors["altitude_agl_m"], truth["alt_agl_m"])
    for name in ("gnss.nmea", "truth.csv", "frames/000003.jpg"):
        assert (tmp_path / "f" / name).read_bytes() == (tmp_path / "q" / name).read_bytes(), name
    with pytest.raises(ValueError, match="heading_sigma_deg"):
        FlightConfig(heading_sigma_deg=-1.0)
