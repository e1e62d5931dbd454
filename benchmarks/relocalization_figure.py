"""A picture of the particle filter's hypotheses over the orthophoto at a few frames of one benchmark flight.

One flight of ``benchmarks/relocalization.py`` (cached models and flight) under a chosen scenario, through the
pipeline with ``fusion.mode: particle``; at the chosen frames the particles (colour = weight), the published
estimate (ambiguous ones hollow), the truth and the latest GNSS fix are drawn over the map.

    python benchmarks/relocalization_figure.py --scenario denied_start --frames 0 3 8 60
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from relocalization import SIZES, _area, frames_with_gnss, load_frames, scenario_gnss  # noqa: E402
from relocalization_setup import prepare_flight, prepare_models, prepare_test_areas, runtime_config  # noqa: E402

from edge_geoloc.runtime.pipeline import Pipeline  # noqa: E402
from edge_geoloc.runtime.replay import read_flight, with_flight_camera  # noqa: E402


def snapshots(scenario: str, seed: int, frames_wanted: list[int], cache: Path) -> tuple[object, list[dict]]:
    models = prepare_models(cache)
    area = prepare_test_areas(cache, models)[0]
    flight = read_flight(prepare_flight(cache, area, seed, SIZES["full"]["duration_s"]))
    frames, sim_area = load_frames(flight), _area(area)
    gnss = scenario_gnss(scenario, flight, sim_area, SIZES["full"], seed)
    cfg = with_flight_camera(runtime_config({"fusion": {"mode": "particle"}}), flight)
    pipe = Pipeline.from_config(models.retrieval_onnx, models.localizer_onnx, area.index_dir, cfg)
    last_fix, shots = None, []
    for i, (frame, batch) in enumerate(frames_with_gnss(frames[: max(frames_wanted) + 1], gnss.fixes)):
        for fix in batch[:-1]:
            pipe.add_gnss(fix)
        last_fix = batch[-1] if batch else last_fix
        state = pipe.process(frame, batch[-1] if batch else None)
        if i in frames_wanted:
            shots.append(_shot(i, frame, state, pipe, flight, sim_area, last_fix))
    return sim_area, shots


def _shot(i, frame, state, pipe, flight, sim_area, last_fix) -> dict:
    origin = pipe.fusion.origin
    lat, lon, _ = origin.from_enu(pipe.fusion.particles[:, 0], pipe.fusion.particles[:, 1], 0.0)
    particles = np.stack(sim_area.latlon_to_local(lat, lon), axis=1)
    estimate = sim_area.latlon_to_local(state.lat_deg, state.lon_deg) if state.initialized else None
    gnss = sim_area.latlon_to_local(last_fix.lat_deg, last_fix.lon_deg) if last_fix is not None else None
    return {"frame": i, "t_s": frame.stamp_s - flight.frame_stamps_s[0], "particles": particles,
            "weights": pipe.fusion.weights.copy(), "estimate": estimate, "ambiguous": state.ambiguous,
            "truth": (flight.truth["east_m"][i], flight.truth["north_m"][i]), "gnss": gnss}


def draw(sim_area, shots: list[dict], scenario: str, out: Path) -> Path:
    half = sim_area.size_m / 2
    fig, axes = plt.subplots(1, len(shots), figsize=(4 * len(shots), 4.3))
    for ax, shot in zip(np.atleast_1d(axes), shots, strict=True):
        ax.imshow(sim_area.ortho_level(0), extent=(-half, half, -half, half))
        p, w = shot["particles"], shot["weights"]
        ax.scatter(p[:, 0], p[:, 1], s=3, c=w / w.max(), cmap="autumn_r", alpha=0.7, linewidths=0)
        ax.plot(*shot["truth"], marker="*", ms=14, color="cyan", mec="k", label="truth")
        if shot["gnss"] is not None:
            ax.plot(*shot["gnss"], marker="x", ms=10, mew=2, color="blue", label="last GNSS fix")
        if shot["estimate"] is not None:
            ax.plot(*shot["estimate"], marker="o", ms=10, mew=2, color="lime",
                    mfc="none" if shot["ambiguous"] else "lime", label="estimate (hollow: ambiguous)")
        error = math.dist(shot["estimate"], shot["truth"]) if shot["estimate"] is not None else float("nan")
        ax.set_title(f"t = {shot['t_s']:.0f} s, error {error:.0f} m" + (" (ambiguous)" if shot["ambiguous"] else ""),
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=7)
    fig.suptitle(f"particle fusion, scenario {scenario} (map summer, flight autumn)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="outage_after_jump")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 12, 30, 60])
    parser.add_argument("--cache", default=".cache/relocalization")
    parser.add_argument("--out", default="docs/images/relocalization_hypotheses.png")
    args = parser.parse_args(argv)
    sim_area, shots = snapshots(args.scenario, args.seed, sorted(args.frames), Path(args.cache))
    print(draw(sim_area, shots, args.scenario, Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
