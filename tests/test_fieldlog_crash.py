"""Crash safety, proven by killing a real logging process with SIGKILL.

The child logs, asks the logger to flush (chunk closed and handed to the OS), reports how many records that
covered, logs more that stay in memory, and waits. The parent kills it and reads the cut file back: exactly
the flushed records come back, and the file can be rewritten as a complete bag.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader

from edge_geoloc.fieldlog import ReadReport, read_log, recover_log
from edge_geoloc.fieldlog import messages as m

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger
    from edge_geoloc.types import CameraFrame, GnssFix

    out, mode = sys.argv[1], sys.argv[2]
    cfg = FieldLogConfig(camera_rate_hz=0.0, chunk_bytes=(1 << 19) if mode == "exact" else 4096,
                         flush_interval_s=3600.0, queue_size=10000)
    logger = FieldLogger(out, cfg)
    rng = np.random.default_rng(0)

    def log(i):
        logger.log_gnss(GnssFix(stamp_s=1000.0 + i, lat_deg=52.0, lon_deg=4.36, alt_m=float(i)))
        if i % 10 == 0:
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            logger.log_frame(CameraFrame(stamp_s=1000.0 + i, image_rgb=image))

    if mode == "exit":  # a normal exit without close(): atexit finishes the bag
        for i in range(50):
            log(i)
        sys.exit(0)
    i = 0
    while True:
        log(i)
        i += 1
        if i % 100 == 0 and (mode == "stream" or i == 200):
            assert logger.flush(30.0)
            print(i, flush=True)
        if mode == "exact" and i == 250:
            print("waiting", flush=True)
            sys.stdin.read()
""")


def child_env() -> dict[str, str]:
    """The child imports this checkout's edge_geoloc, wherever pytest was started from."""
    repo = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_child_until(out_dir, mode: str, stop_after: int) -> tuple[subprocess.Popen, int]:
    """Start the child, read its flush reports until it reports ``stop_after``, then SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out_dir), mode], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, env=child_env())
    flushed = 0
    for line in proc.stdout:
        text = line.strip()
        if text.isdigit():
            flushed = int(text)
        if text == "waiting" or flushed >= stop_after:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL
    return proc, flushed


def test_sigkill_keeps_exactly_what_was_flushed(tmp_path):
    _, flushed = run_child_until(tmp_path / "log", "exact", stop_after=10**9)
    assert flushed == 200
    report = ReadReport()
    records = list(read_log(tmp_path / "log", report=report))
    assert len(report.truncated_files) == 1  # no footer, no index, no metadata.yaml ...
    gnss = [round(r.stamp_s) - 1000 for r in records if r.topic == m.GNSS_FIX]
    frames = [round(r.stamp_s) - 1000 for r in records if r.topic == m.CAMERA]
    assert gnss == list(range(200)) and frames == list(range(0, 200, 10))  # ... but every flushed record
    recovered = recover_log(tmp_path / "log", tmp_path / "recovered")
    assert recovered.was_truncated and recovered.messages == 220
    with AnyReader([tmp_path / "recovered"]) as reader:
        assert reader.message_count == 220


def test_sigkill_while_writing_leaves_a_readable_prefix(tmp_path):
    _, flushed = run_child_until(tmp_path / "log", "stream", stop_after=500)
    assert flushed >= 500
    gnss = [round(r.stamp_s) - 1000 for r in read_log(tmp_path / "log", topics=[m.GNSS_FIX])]
    assert len(gnss) >= flushed and gnss == list(range(len(gnss)))  # a gap-free prefix, at least the flushed part


def test_a_normal_exit_without_close_still_finishes_the_bag(tmp_path):
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "log"), "exit"], check=True, env=child_env(),
                   timeout=120)
    report = ReadReport()
    assert len(list(read_log(tmp_path / "log", topics=[m.GNSS_FIX], report=report))) == 50
    assert not report.truncated_files and (tmp_path / "log" / "fieldlog_0000" / "metadata.yaml").is_file()


def test_a_file_cut_anywhere_reads_back_a_growing_prefix(tmp_path):
    from edge_geoloc.fieldlog import FieldLogConfig, FieldLogger
    from edge_geoloc.types import GnssFix

    with FieldLogger(tmp_path / "log", FieldLogConfig(chunk_bytes=1024)) as logger:
        for i in range(200):
            logger.log_gnss(GnssFix(stamp_s=1000.0 + i, lat_deg=52.0, lon_deg=4.36, alt_m=float(i)))
    data = next((tmp_path / "log").glob("*/*.mcap")).read_bytes()
    full = [round(r.stamp_s) for r in read_log(tmp_path / "log")]
    counts = []
    for cut in np.linspace(0, len(data), 40).astype(int):
        path = tmp_path / f"cut_{cut}.mcap"
        path.write_bytes(data[:cut])
        stamps = [round(r.stamp_s) for r in read_log(path)]
        assert stamps == full[: len(stamps)]
        counts.append(len(stamps))
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 200


def test_after_sigkill_metadata_is_valid_and_fieldlog_recover_completes_the_bag(tmp_path):
    """`ros2 bag info` reads metadata.yaml: it must exist and count what is on disk, even after SIGKILL."""
    import pytest
    import yaml
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader, ReaderError

    from edge_geoloc.cli import main as cli_main
    from edge_geoloc.fieldlog import is_complete

    _, flushed = run_child_until(tmp_path / "log", "exact", stop_after=10**9)
    part = tmp_path / "log" / "fieldlog_0000"
    assert flushed == 200 and not is_complete(part / "fieldlog_0000.mcap")
    info = yaml.safe_load((part / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8 and info["storage_identifier"] == "mcap" and info["message_count"] == 220
    assert info["relative_file_paths"] == ["fieldlog_0000.mcap"] and info["duration"]["nanoseconds"] == 199 * 10**9
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    assert counts[m.GNSS_FIX] == 200 and counts[m.CAMERA] == 20
    with pytest.raises(ReaderError, match="end magic"):  # the metadata is fine; the cut MCAP needs recovering
        Reader(part).open()

    assert cli_main(["fieldlog", "recover", str(tmp_path / "log")]) == 0
    assert is_complete(part / "fieldlog_0000.mcap") and (part / "fieldlog_0000.mcap.cut").is_file()
    with AnyReader([part]) as reader:  # rosbags: metadata + the MCAP summary
        assert reader.message_count == 220
        assert len(list(reader.messages())) == 220
    with (part / "fieldlog_0000.mcap").open("rb") as f:  # mcap's seeking reader (summary, chunk indexes)
        mcap_reader = make_reader(f)
        assert mcap_reader.get_header().profile == "ros2"
        topics = [channel.topic for _, channel, _ in mcap_reader.iter_messages()]
    assert topics.count(m.GNSS_FIX) == 200 and topics.count(m.CAMERA) == 20
    assert cli_main(["fieldlog", "recover", str(tmp_path / "log")]) == 0  # nothing left to do
