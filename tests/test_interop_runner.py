"""Frame/GNSS pairing, throttling and the latest-frame worker: slow inference never blocks callbacks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_geoloc.interop import AsyncRunner, ConversionError, GeolocRunner, GnssVelocity, LatestSlot
from edge_geoloc.types import CameraFrame, FusedState, GnssFix

WAIT_S = 10.0  # upper bound on event waits; tests never sleep


def frame(stamp_s: float) -> CameraFrame:
    return CameraFrame(stamp_s=stamp_s, image_rgb=np.zeros((2, 2, 3), np.uint8))


def gnss(stamp_s: float) -> GnssFix:
    return GnssFix(stamp_s=stamp_s, lat_deg=52.0, lon_deg=4.0, alt_m=0.0)


def state(stamp_s: float) -> FusedState:
    return FusedState(stamp_s, 52.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, (1.0,) * 9, True, True, False)


class RecordingPipeline:
    def __init__(self, block_first: bool = False, fail_on: float | None = None) -> None:
        self.calls: list[tuple[float, float | None]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.block_first, self.fail_on = block_first, fail_on
        if not block_first:
            self.release.set()

    def process(self, frame: CameraFrame, gnss: GnssFix | None) -> FusedState:
        self.calls.append((frame.stamp_s, None if gnss is None else gnss.stamp_s))
        self.entered.set()
        assert self.release.wait(WAIT_S)
        if frame.stamp_s == self.fail_on:
            raise RuntimeError("engine failed")
        return state(frame.stamp_s)


def test_latest_slot_keeps_the_newest_and_reports_replacement():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True
    assert slot.take() == 2 and slot.take(timeout_s=0) is None
    slot.put(3)
    slot.close()
    assert slot.take() == 3 and slot.take() is None


def test_each_gnss_fix_is_used_once_with_the_next_frame():
    pipeline = RecordingPipeline()
    runner = GeolocRunner(pipeline)
    runner.on_gnss(gnss(0.1))
    runner.on_gnss(gnss(0.2))
    runner.on_gnss(None)
    runner.process(frame(0.3))
    runner.process(frame(0.4))
    assert pipeline.calls == [(0.3, 0.2), (0.4, None)]
    counts = runner.counters.snapshot()
    assert (counts["gnss_received"], counts["gnss_superseded"], counts["gnss_no_fix"]) == (3, 1, 1)


class FixRecorder:
    def __init__(self) -> None:
        self.fixes: list[GnssFix | None] = []

    def process(self, frame: CameraFrame, gnss: GnssFix | None) -> FusedState:
        self.fixes.append(gnss)
        return state(frame.stamp_s)


def test_gnss_velocity_goes_with_the_fix_of_its_epoch_in_either_order():
    pipeline = FixRecorder()
    runner = GeolocRunner(pipeline)
    runner.on_gnss(gnss(1.0))
    runner.on_gnss_velocity(GnssVelocity(1.0, 9.0, 0.5))  # after its fix
    runner.process(frame(1.1))
    runner.on_gnss_velocity(GnssVelocity(2.0, 8.0, 0.6))  # before its fix
    runner.on_gnss(gnss(2.0))
    runner.process(frame(2.1))
    runner.on_gnss(gnss(3.0))  # the last velocity is from another epoch: not this fix's
    runner.process(frame(3.1))
    speeds = [(f.speed_mps, f.course_rad) for f in pipeline.fixes]
    assert speeds == [(9.0, 0.5), (8.0, 0.6), (None, None)]
    counts = runner.counters.snapshot()
    assert (counts["gnss_velocity_received"], counts["gnss_velocity_paired"]) == (2, 2)


def test_throttle_by_stamp_and_reset_when_time_goes_back():
    runner = GeolocRunner(RecordingPipeline(), max_rate_hz=2.0)
    accepted = [s for s in (10.0, 10.1, 10.5, 10.6, 11.0, 3.0, 3.1) if runner.accept_frame(s)]
    assert accepted == [10.0, 10.5, 11.0, 3.0]
    assert runner.counters.snapshot()["frames_throttled"] == 3
    with pytest.raises(ValueError, match="max_rate_hz"):
        GeolocRunner(RecordingPipeline(), max_rate_hz=-1.0)


def test_slow_inference_drops_old_frames_without_blocking_submit():
    pipeline = RecordingPipeline(block_first=True)
    results, done = [], threading.Event()

    def on_result(frame: CameraFrame, fused: FusedState) -> None:
        results.append(fused.stamp_s)
        if len(results) == 2:
            done.set()

    worker = AsyncRunner(GeolocRunner(pipeline), on_result).start()
    worker.submit(frame(1.0))
    assert pipeline.entered.wait(WAIT_S)  # the worker is now stuck in inference on frame 1
    for stamp in (2.0, 3.0, 4.0):
        worker.submit(frame(stamp))  # returns at once although the pipeline is busy
    pipeline.release.set()
    assert done.wait(WAIT_S)
    worker.stop()
    assert results == [1.0, 4.0]
    counts = worker.counters.snapshot()
    assert (counts["frames_received"], counts["frames_dropped"], counts["frames_processed"]) == (4, 2, 2)


def test_stale_frames_are_dropped_and_errors_do_not_stop_the_worker():
    pipeline = RecordingPipeline(fail_on=5.0)
    results: list[float] = []
    worker = AsyncRunner(GeolocRunner(pipeline), lambda f, s: results.append(s.stamp_s),
                         clock=lambda: 100.0, max_age_s=1.0)
    worker.submit(frame(50.0))  # 50 s old when the worker takes it
    worker.start()
    worker.stop()  # drains the slot, then joins
    assert worker.counters.snapshot()["frames_stale"] == 1 and pipeline.calls == []

    worker = AsyncRunner(GeolocRunner(pipeline), lambda f, s: results.append(s.stamp_s)).start()
    worker.submit(frame(5.0))
    assert pipeline.entered.wait(WAIT_S)
    worker.submit(frame(6.0))
    worker.stop()
    assert results == [6.0] and worker.counters.snapshot()["process_errors"] == 1


def test_items_are_prepared_on_the_worker_and_bad_ones_counted():
    pipeline = RecordingPipeline()
    results: list[float] = []

    def prepare(item: str) -> CameraFrame:
        if item == "corrupt":
            raise ConversionError("cannot decode")
        return frame(float(item))

    worker = AsyncRunner(GeolocRunner(pipeline), lambda f, s: results.append(s.stamp_s), prepare=prepare)
    worker.submit("corrupt", stamp_s=1.0)
    worker.start()
    worker.stop()
    assert worker.counters.snapshot()["conversion_errors"] == 1
    worker = AsyncRunner(GeolocRunner(pipeline), lambda f, s: results.append(s.stamp_s), prepare=prepare)
    worker.submit("2.0", stamp_s=2.0)
    worker.start()
    worker.stop()
    assert results == [2.0] and pipeline.calls == [(2.0, None)]


def test_runner_keeps_the_latest_heading_and_altitude_for_frames():
    runner = GeolocRunner(pipeline=None, fixed_altitude_agl_m=25.0)
    assert runner.frame_inputs() == (None, 25.0)  # the fixed height until one is measured
    runner.on_heading(0.5)
    runner.on_altitude_agl(40.0)
    runner.on_altitude_agl(41.5)
    assert runner.frame_inputs() == (0.5, 41.5)
    assert GeolocRunner(pipeline=None).frame_inputs() == (None, None)
    with pytest.raises(ValueError, match="fixed_altitude_agl_m"):
        GeolocRunner(pipeline=None, fixed_altitude_agl_m=-1.0)


def test_held_heading_and_altitude_expire_so_a_dead_sensor_cannot_misalign_later_frames():
    runner = GeolocRunner(pipeline=None, fixed_altitude_agl_m=25.0, max_sensor_age_s=1.0)
    runner.on_heading(0.5, stamp_s=10.0)
    runner.on_altitude_agl(40.0, stamp_s=10.2)
    assert runner.frame_inputs(10.9) == (0.5, 40.0)
    assert runner.frame_inputs(11.1) == (None, 40.0)  # the heading is 1.1 s old
    assert runner.frame_inputs(11.5) == (None, None)
    assert runner.counters.snapshot()["heading_stale"] == 2 and runner.counters.snapshot()["altitude_stale"] == 1
    runner.on_heading(0.7, stamp_s=11.6)  # the compass is back
    assert runner.frame_inputs(11.7)[0] == 0.7
    assert runner.frame_inputs() == (0.7, 40.0)  # no frame stamp: nothing to compare with
    assert GeolocRunner(pipeline=None, max_sensor_age_s=0.0).frame_inputs(1e9) == (None, None)
    with pytest.raises(ValueError, match="max_sensor_age_s"):
        GeolocRunner(pipeline=None, max_sensor_age_s=-1.0)
