"""The demo's framework without any model: run folders, step manifests, --from-step reuse, cache, report."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from edge_geoloc.demo.cache import cache_key, cached_build
from edge_geoloc.demo.config import DemoConfig
from edge_geoloc.demo.report import ReportInputs, build_report, format_table, outage_mask
from edge_geoloc.demo.runfolder import StepOutputError, list_runs, new_run_dir
from edge_geoloc.demo.runner import Step, run_steps, warn_if_config_differs
from edge_geoloc.geo import haversine_m
from edge_geoloc.runtime.trajectory import TrajectoryRow, error_stats, read_trajectory, write_trajectory

NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=timezone.utc)


def test_run_folders_never_reuse_an_existing_folder(tmp_path):
    first = new_run_dir(tmp_path, NOW)
    (first / "result.txt").write_text("first")
    second = new_run_dir(tmp_path, NOW)
    assert first.name == "20261122T030000Z" and second.name == "20261122T030000Z-1"
    assert (first / "result.txt").read_text() == "first" and not any(second.iterdir())


def _toy_steps(calls: list[int]) -> list[Step]:
    def write(n: int):
        def run(ctx):
            calls.append(n)
            prev = ctx.step(n - 1) / "value.txt" if n > 1 else None
            value = int(prev.read_text()) + 1 if prev else 1
            (ctx.step_dir / "value.txt").write_text(str(value))
            return {"value": value}
        return run
    return [Step(n, f"s{n}", f"step {n}", write(n)) for n in (1, 2, 3)]


def test_from_step_reuses_verified_outputs_and_reruns_the_rest(tmp_path):
    calls: list[int] = []
    cfg = DemoConfig()
    run1 = new_run_dir(tmp_path / "runs", NOW)
    run_steps(_toy_steps(calls), run1, cfg, tmp_path / "cache")
    assert calls == [1, 2, 3] and list_runs(tmp_path / "runs") == [run1]
    run2 = new_run_dir(tmp_path / "runs", NOW)
    manifests = run_steps(_toy_steps(calls), run2, cfg, tmp_path / "cache", from_step=3, reuse_run=run1)
    assert calls == [1, 2, 3, 3]  # steps 1 and 2 were adopted, not re-run
    assert manifests[3].metrics == {"value": 3}
    assert (run2 / "01_s1" / "value.txt").read_text() == "1"
    record = json.loads((run2 / "run.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["reused", "reused", "ran"]
    assert warn_if_config_differs(run1, DemoConfig(seed=5)) == ["seed"]
    assert warn_if_config_differs(run1, cfg) == []


def test_corrupt_or_missing_step_output_fails_clearly(tmp_path):
    cfg = DemoConfig()
    run1 = new_run_dir(tmp_path / "runs", NOW)
    run_steps(_toy_steps([]), run1, cfg, tmp_path / "cache")
    target = run1 / "02_s2" / "value.txt"
    target.unlink()
    target.write_text("99")  # same size, different content (unlink first: run2 must not share the inode)
    run2 = new_run_dir(tmp_path / "runs", NOW)
    with pytest.raises(StepOutputError, match=r"step 2 \(s2\) output is corrupt.*--from-step 2"):
        run_steps(_toy_steps([]), run2, cfg, tmp_path / "cache", from_step=3, reuse_run=run1)
    (run1 / "01_s1" / "manifest.json").unlink()
    run3 = new_run_dir(tmp_path / "runs", NOW)
    with pytest.raises(StepOutputError, match=r"step 1 \(s1\) output is missing"):
        run_steps(_toy_steps([]), run3, cfg, tmp_path / "cache", from_step=2, reuse_run=run1)


def test_from_step_without_an_earlier_run_says_what_to_do(tmp_path):
    with pytest.raises(StepOutputError, match="run the whole demo once"):
        run_steps(_toy_steps([]), new_run_dir(tmp_path, NOW), DemoConfig(), tmp_path / "c", from_step=2)
    with pytest.raises(ValueError, match="valid steps"):
        run_steps(_toy_steps([]), new_run_dir(tmp_path, NOW), DemoConfig(), tmp_path / "c", from_step=9)


def test_cache_builds_once_and_rebuilds_a_corrupt_entry(tmp_path):
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "area.bin").write_bytes(b"abc" * 100)

    key = cache_key("source-seed0", {"seed": 0}, "code-v1")
    assert key != cache_key("source-seed0", {"seed": 1}, "code-v1") != cache_key("source-seed0", {"seed": 0}, "v2")
    entry, hit = cached_build(tmp_path, key, build)
    assert not hit and len(builds) == 1
    assert cached_build(tmp_path, key, build) == (entry, True) and len(builds) == 1
    (entry / "area.bin").write_bytes(b"xyz" * 100)
    entry2, hit = cached_build(tmp_path, key, build)
    assert not hit and len(builds) == 2 and (entry2 / "area.bin").read_bytes() == b"abc" * 100


def _toy_trajectory(path: Path, offset_deg: float) -> Path:
    rows = []
    for i in range(20):
        lat, lon = 52.0 + 1e-5 * i, 4.36
        gnss = None if 8 <= i < 12 else (lat + 2e-5, lon)
        rows.append(TrajectoryRow(stamp_s=float(i), truth_lat_deg=lat, truth_lon_deg=lon,
                                  gnss_lat_deg=gnss[0] if gnss else None, gnss_lon_deg=gnss[1] if gnss else None,
                                  gnss_held_lat_deg=52.0 + 1e-5 * min(i, 7) + 2e-5, gnss_held_lon_deg=lon,
                                  fused_lat_deg=lat + offset_deg, fused_lon_deg=lon, total_ms=10.0 + i))
    return write_trajectory(path, rows)


def test_trajectory_round_trip_and_error_stats(tmp_path):
    path = _toy_trajectory(tmp_path / "t.csv", 1e-5)
    table = read_trajectory(path)
    assert table["fused_lat_deg"][3] == 52.0 + 3e-5 + 1e-5  # repr keeps every bit
    assert math.isnan(table["gnss_lat_deg"][9]) and math.isnan(table["visual_lat_deg"][0])
    stats = error_stats([1.0, 2.0, 3.0, float("nan")])
    assert stats["mean_m"] == 2.0 and stats["max_m"] == 3.0 and stats["n"] == 3 and stats["coverage"] == 0.75


def test_report_numbers_match_the_trajectories(tmp_path):
    trajectories = {"teacher": _toy_trajectory(tmp_path / "a.csv", 3e-5),
                    "adapted": _toy_trajectory(tmp_path / "b.csv", 1e-5)}
    ortho = np.zeros((64, 64, 3), np.uint8)
    samples = {"query": np.zeros((2, 8, 8, 3), np.uint8), "aerial": np.zeros((2, 16, 16, 3), np.uint8),
               "truth_px": np.full((2, 2), 8.0), "frame_index": np.array([0, 5]),
               "heatmap_teacher": np.random.rand(2, 16, 16), "peak_px_teacher": np.full((2, 2), 4.0),
               "heatmap_adapted": np.random.rand(2, 16, 16), "peak_px_adapted": np.full((2, 2), 7.0)}
    inputs = ReportInputs(trajectories, outages_s=[(8.0, 12.0)], ortho_rgb=ortho,
                          latlon_to_pixel=lambda lat, lon: ((lat - 52.0) * 1e5, (lon - 4.36) * 1e5 + 30),
                          heatmap_samples=samples, metrics={"retrieval": {"recall_at_1 (target)": 50.0}},
                          steps=[{"step": 1, "name": "x", "status": "ran", "duration_s": 1.0}])
    summary = build_report(inputs, tmp_path / "report")
    expected = haversine_m(52.0, 4.36, 52.0 + 3e-5, 4.36)
    assert summary["flight"]["all"]["fused_teacher"]["mean_m"] == pytest.approx(expected, rel=1e-9)
    assert summary["flight"]["outage"]["gnss_only"]["n"] == 4
    assert summary["flight"]["runtime"]["teacher"]["rate_hz"] == pytest.approx(1000 / 19.5)
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="http' not in page
    table = format_table(summary)
    assert "Retrieval drone->satellite recall_at_1 (target)" in table and "50.0 %" in table
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["figures"]["heatmaps"] == "heatmaps.png"


def test_outage_mask_is_half_open():
    assert outage_mask(np.array([0.0, 1.0, 2.0, 3.0]), [(1.0, 3.0)]).tolist() == [False, True, True, False]


def test_cli_rejects_bad_arguments_before_creating_a_run(tmp_path, capsys):
    from edge_geoloc.demo.cli import main

    assert main(["--quick", "--out", str(tmp_path), "--from-step", "3"]) == 2
    assert "run the whole demo once" in capsys.readouterr().err
    assert main(["--quick", "--out", str(tmp_path), "--set", "retreival.x=1"]) == 2
    assert "valid keys" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run folder was started


@pytest.mark.parametrize("override, where", [
    ("adaptation.lrr=1e-4", "adaptation.lrr for AdaptConfig"),
    ("localizer.optim.epoch=2", "localizer.optim.epoch for LocalizerOptimConfig"),
    ("dataset.every_m=2", "dataset.every_m (edge_geoloc.fieldlog.dataset.build_pairs_from_logs)"),
    ("retrieval_data.n_trian=4", "retrieval_data.n_trian (edge_geoloc.sim.datasets.write_university_tree)"),
])
def test_a_typo_in_a_component_section_fails_before_step_1(tmp_path, capsys, override, where):
    from edge_geoloc.demo.cli import main

    assert main(["--quick", "--out", str(tmp_path), "--set", override]) == 2
    assert where in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run folder was started, no step ran


def test_the_run_layout_names_every_step_folder_the_steps_use():
    from edge_geoloc.demo.layout import RunLayout
    from edge_geoloc.demo.steps import demo_steps

    layout = RunLayout(Path("run"))
    assert [layout.step_dir(s.number).name for s in demo_steps()] == [
        "01_areas", "02_train", "03_export", "04_fly", "05_adapt", "06_report"]
    assert layout.localizer_checkpoint == Path("run/02_train/localizer/last.safetensors")
    with pytest.raises(ValueError, match="area role"):
        layout.area("sorce")
