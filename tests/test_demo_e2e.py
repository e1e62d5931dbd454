"""The quick demo profile end to end: every step runs on the real components, and the report's numbers are
recomputed here from the artifacts the run wrote (trajectory CSVs, step manifests), not trusted.

One full quick run (about 2 minutes on 2 cores) is shared by the tests of this module; the reuse tests then
only re-run the report step.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from edge_geoloc.demo.cli import main
from edge_geoloc.demo.runfolder import hash_tree, list_runs, verify_step
from edge_geoloc.geo import haversine_m

pytestmark = pytest.mark.slow
STEPS = ("01_areas", "02_train", "03_export", "04_fly", "05_adapt", "06_report")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["--quick", "--out", str(out / "runs"), "--cache", str(out / "cache")]) == 0
    (run,) = list_runs(out / "runs")
    return out, run


def _errors_from_csv(path, prefix):
    """Haversine error of ``<prefix>_lat/lon_deg`` vs the truth columns, recomputed from the CSV text."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    errors = [haversine_m(float(r["truth_lat_deg"]), float(r["truth_lon_deg"]), float(r[f"{prefix}_lat_deg"]),
                          float(r[f"{prefix}_lon_deg"])) for r in rows if r[f"{prefix}_lat_deg"] != ""]
    stamps = np.array([float(r["stamp_s"]) for r in rows if r[f"{prefix}_lat_deg"] != ""])
    return np.array(errors), stamps, rows


def test_every_step_is_sealed_and_the_report_is_self_contained(quick_run):
    _, run = quick_run
    for folder in STEPS:
        number, name = int(folder[:2]), folder[3:]
        assert verify_step(run / folder, number, name).files, folder
    page = (run / "06_report" / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4 and "src=\"http" not in page  # + hypotheses.png (particles)
    for png in ("trajectories.png", "errors.png", "heatmaps.png"):
        assert (run / "06_report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "04_fly" / "fieldlog").is_dir() and any((run / "04_fly" / "fieldlog").rglob("*.mcap"))


def test_report_numbers_match_the_written_trajectories(quick_run):
    _, run = quick_run
    summary = json.loads((run / "06_report" / "summary.json").read_text())
    for flight, folder in (("teacher", "04_fly/replay_teacher"), ("adapted", "05_adapt/replay_adapted")):
        errors, _, rows = _errors_from_csv(run / folder / "trajectory.csv", "fused")
        stats = summary["flight"]["all"][f"fused_{flight}"]
        assert stats["n"] == len(errors) > 0
        assert stats["mean_m"] == pytest.approx(errors.mean(), rel=1e-9)
        assert stats["p95_m"] == pytest.approx(np.percentile(errors, 95), rel=1e-9)
        assert stats["max_m"] == pytest.approx(errors.max(), rel=1e-9)
        total_ms = np.array([float(r["total_ms"]) for r in rows])
        assert summary["flight"]["runtime"][flight]["rate_hz"] == pytest.approx(1000.0 / total_ms.mean())
    gnss, _, _ = _errors_from_csv(run / "04_fly/replay_teacher/trajectory.csv", "gnss_held")
    assert summary["flight"]["all"]["gnss_only"]["mean_m"] == pytest.approx(gnss.mean(), rel=1e-9)


def test_report_copies_measured_metrics_from_the_step_manifests(quick_run):
    _, run = quick_run
    summary = json.loads((run / "06_report" / "summary.json").read_text())
    adapt = json.loads((run / "05_adapt" / "manifest.json").read_text())["metrics"]
    train = json.loads((run / "02_train" / "manifest.json").read_text())["metrics"]
    assert summary["localizer"] == adapt["localizer_eval"]
    assert summary["localizer"]["teacher"]["count"] == summary["localizer"]["adapted"]["count"] > 0
    assert summary["retrieval"]["recall_at_1 (target)"] == train["retrieval"]["target"]["recall_at_1"]
    assert 0.0 <= summary["retrieval"]["recall_at_1 (target)"] <= 100.0
    text = (run / "06_report" / "summary.txt").read_text()
    assert f"{summary['flight']['all']['fused_teacher']['mean_m']:.1f}" in text
    onboard = summary["onboard_retrieval"]  # the learned map matcher: held-out R@1 beside NCC and chance
    assert set(onboard) == {"target_area", "style_target"}
    for name, row in onboard.items():
        assert row["matcher"] == train["matcher"][name]["matcher"]["r1_contains"]
        assert row["ncc"] == train["matcher"][name]["ncc"]["r1_contains"]
        assert 0.0 < row["chance"] < 100.0 and row["queries"] == 12
        assert f"{row['matcher']:.1f} % (NCC {row['ncc']:.1f} %" in text
    assert train["matcher"]["learning_curve"][-1]["step"] == train["matcher"]["steps"]


def test_the_flight_searched_the_map_with_the_exported_matcher(quick_run):
    _, run = quick_run
    fly = json.loads((run / "04_fly" / "manifest.json").read_text())["metrics"]
    assert fly["global_search"] == {"kind": "matcher", "model": "matcher.onnx"}
    sidecar = json.loads((run / "03_export" / "matcher.json").read_text())
    assert sidecar["kind"] == "matcher" and sidecar["parity"]["passed"]


def test_the_second_flight_used_the_model_adapted_from_the_first_flights_logs(quick_run):
    """Fly, log, adapt, redeploy: the logs became the adaptation set, and the re-exported student flew."""
    _, run = quick_run
    fly = json.loads((run / "04_fly" / "manifest.json").read_text())["metrics"]
    adapt = json.loads((run / "05_adapt" / "manifest.json").read_text())["metrics"]
    dataset = json.loads((run / "05_adapt" / "adapt_dataset" / "dataset.json").read_text())
    report = adapt["dataset"]
    assert dataset["count"] == report["samples"] > 0
    assert report["frames"] == fly["frames"]  # every flown frame was logged, and each is accounted for:
    assert report["samples"] + report["no_coarse_position"] + report["outside_map"] + report["undecodable_jpeg"] \
        == report["frames"]
    with open(run / "05_adapt" / "adapt_dataset" / "samples.jsonl", encoding="utf-8") as f:
        assert not any("gt_row" in json.loads(line) for line in f)  # no ground truth came from the logs
    teacher, student = (json.loads((run / path).read_text())
                        for path in ("03_export/localizer.json", "05_adapt/localizer_adapted.json"))
    assert teacher["sha256"]["weights"] != student["sha256"]["weights"]
    assert adapt["flight"]["frames"] == fly["frames"]


def test_from_step_reuses_a_run_without_touching_it(quick_run):
    out, run = quick_run
    before = hash_tree(run)
    assert main(["--quick", "--out", str(out / "runs"), "--cache", str(out / "cache"), "--from-step", "6",
                 "--reuse", str(run)]) == 0
    new_run = [r for r in list_runs(out / "runs") if r != run][-1]
    assert hash_tree(run) == before
    record = json.loads((new_run / "run.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["reused"] * 5 + ["ran"]
    old, new = (json.loads((r / "06_report" / "summary.json").read_text()) for r in (run, new_run))
    assert new["flight"] == old["flight"] and new["localizer"] == old["localizer"]


def test_a_corrupt_artifact_stops_the_next_run_with_a_clear_message(quick_run, capsys):
    out, run = quick_run
    broken = out / "broken"
    shutil.copytree(run, broken)
    csv_path = broken / "04_fly" / "replay_teacher" / "trajectory.csv"
    data = bytearray(csv_path.read_bytes())
    data[-5] = ord("7") if data[-5] != ord("7") else ord("8")
    csv_path.write_bytes(bytes(data))
    code = main(["--quick", "--out", str(out / "runs2"), "--from-step", "5", "--reuse", str(broken)])
    err = capsys.readouterr().err
    assert code == 2 and "corrupt" in err and "trajectory.csv" in err and "--from-step 4" in err
