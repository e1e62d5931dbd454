"""A synthetic flight (edge_geoloc.sim.simulate_flight) -> rosbag2 (flight-to-bag) -> replay-bag."""

from __future__ import annotations

import pytest
from rosbags.highlevel import AnyReader
from test_replay_bag import FakePipeline

from edge_geoloc.interop import flight_bag, navsatfix_to_gnss
from edge_geoloc.interop.flight_bag import flight_to_bag
from edge_geoloc.interop.replay_bag import ReplayError, ReplayOptions, replay_bag
from edge_geoloc.runtime.replay import read_flight
from edge_geoloc.sim import generate_area
from edge_geoloc.sim.flight import FlightConfig, simulate_flight


@pytest.fixture(scope="module")
def flight_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    area = generate_area("source", 0, size_m=300.0, gsd_m=1.0)
    cfg = FlightConfig(duration_s=3.0, speed_mps=5.0, altitude_agl_m=60.0, width_px=64, height_px=64)
    simulate_flight(area, root / "flight", cfg)
    return root / "flight"


@pytest.mark.parametrize("storage, distro", [("mcap", "humble"), ("sqlite3", "jazzy")])
def test_flight_bag_holds_the_flight_exactly_and_replays(flight_dir, tmp_path, storage, distro):
    flight = read_flight(flight_dir)
    counts = flight_to_bag(flight_dir, tmp_path / "bag", distro=distro, storage=storage)
    n_frames = len(flight.frame_paths)
    assert counts == {"/camera/image/compressed": n_frames, "/gnss/fix": len(flight.gnss), "/heading": n_frames,
                      "/altitude_agl": n_frames, "/camera/camera_info": 1}
    with AnyReader([tmp_path / "bag"]) as reader:
        by_topic: dict[str, list] = {}
        last_t = 0
        for conn, t_ns, raw in reader.messages():
            assert t_ns >= last_t  # written in time order
            last_t = t_ns
            by_topic.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    images = by_topic["/camera/image/compressed"]
    assert bytes(images[0].data) == flight.frame_paths[0].read_bytes()  # the JPEG as recorded, not re-encoded
    carried = ("stamp_s", "lat_deg", "lon_deg", "alt_m", "position_covariance_m2", "covariance_type", "status")
    back = [navsatfix_to_gnss(m) for m in by_topic["/gnss/fix"]]  # NavSatFix has no HDOP, satellites, speed
    assert [[getattr(f, k) for k in carried] for f in back] == [[getattr(f, k) for k in carried] for f in flight.gnss]
    pipeline = FakePipeline()
    report = replay_bag(tmp_path / "bag", tmp_path / "out", pipeline, ReplayOptions(storage=storage))
    assert [s for s, *_ in pipeline.seen] == pytest.approx(list(flight.frame_stamps_s), abs=1e-6)
    assert pipeline.seen[0][1].shape == (64, 64, 3)
    assert report.written["/geoloc/fix"] == len(flight.frame_paths)
    assert report.counters["gnss_received"] == len(flight.gnss)
    # the frames carry what the vehicle measured (sensors.csv), never the truth
    assert [h for *_, h in pipeline.seen] == pytest.approx(list(flight.sensors["heading_rad"]), abs=1e-9)
    assert flight.sensors["heading_rad"] != pytest.approx(list(flight.truth["heading_rad"]), abs=1e-6)
    info = by_topic["/camera/camera_info"][0]
    assert (info.width, info.height) == (64, 64)


def test_cli_refuses_a_folder_that_is_not_a_flight(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert flight_bag.main([str(tmp_path / "empty"), "-o", str(tmp_path / "bag")]) == 2
    assert "no .jpg/.png frames" in capsys.readouterr().err
    with pytest.raises(ReplayError, match="already exists"):
        flight_to_bag(tmp_path / "empty", tmp_path / "empty")
