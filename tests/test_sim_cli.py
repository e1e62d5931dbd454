"""``edge-geoloc sim ...`` end to end on tiny inputs, and its errors."""

from __future__ import annotations

import yaml

from edge_geoloc.cli import main as edge_geoloc_main
from edge_geoloc.geo import GeoRaster
from edge_geoloc.sim import load_flight


def test_area_views_flight_university(tmp_path, capsys):
    area_dir = tmp_path / "area"
    assert edge_geoloc_main(["sim", "area", "--out", str(area_dir), "style=target", "seed=5", "size_m=200",
                             "gsd_m=1.0"]) == 0
    with GeoRaster(area_dir / "ortho.tif") as raster:
        assert raster.georef.height_px == 200 and raster.m_per_px == 1.0
    assert yaml.safe_load((area_dir / "config.yaml").read_text())["style"] == "target"
    assert (area_dir / "preview.png").is_file()
    assert edge_geoloc_main(["sim", "views", "--area", str(area_dir), "--out", str(tmp_path / "views")]) == 0
    assert len(list((tmp_path / "views").glob("*.png"))) == 6
    assert edge_geoloc_main(["sim", "flight", "--area", str(area_dir), "--out", str(tmp_path / "flight"),
                             "--gnss-preset", "outage", "duration_s=4", "width_px=32", "height_px=32",
                             "gnss.outages=[[1.0, 2.0]]", "gnss.outage_rate_hz=0"]) == 0
    flight = load_flight(tmp_path / "flight")
    assert len(flight.frame_paths) == 9 and [e["kind"] for e in flight.events] == ["outage"]
    assert flight.meta["gnss_noise"]["outage_duration_s"] == 20.0  # from the preset, not the defaults
    assert edge_geoloc_main(["sim", "university", "--area", str(area_dir), "--out", str(tmp_path / "U"),
                             "n_train=2", "n_test=1", "n_distractors=1", "views_per_location=2", "drone_px=32",
                             "satellite_px=32", "satellite_size_m=60"]) == 0
    assert sorted(p.name for p in (tmp_path / "U" / "test" / "gallery_satellite").iterdir()) == ["0003", "0004"]


def test_errors_name_the_parameter(tmp_path, capsys):
    assert edge_geoloc_main(["sim", "area", "--out", str(tmp_path / "a"), "size_m=1e6", "gsd_m=0.1"]) == 2
    assert "size_m" in capsys.readouterr().out
    assert edge_geoloc_main(["sim", "area", "--out", str(tmp_path / "a"), "colour=red"]) == 2
    assert "unknown key(s) colour" in capsys.readouterr().out
    assert edge_geoloc_main(["sim", "flight", "--area", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "edge-geoloc sim area" in capsys.readouterr().out


def test_shipped_configs_load():
    from pathlib import Path

    from edge_geoloc.config import load_config
    from edge_geoloc.sim.configs import AreaConfig, UniversityConfig, VigorConfig
    from edge_geoloc.sim.flight import FlightConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert load_config(AreaConfig, configs / "sim_area.yaml").style == "source"
    assert load_config(UniversityConfig, configs / "sim_university.yaml").alt_range_m == (121.5, 256.0)
    assert load_config(VigorConfig, configs / "sim_vigor.yaml").satellite_m_per_px is None
    drone = load_config(FlightConfig, configs / "sim_flight_drone.yaml")
    car = load_config(FlightConfig, configs / "sim_flight_car.yaml")
    assert drone.kind == "drone" and drone.gnss.outages == ((60.0, 80.0),)
    assert car.kind == "car" and car.gnss.reported_sigma_scale == 0.6
