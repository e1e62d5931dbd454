"""The report's figures (matplotlib, Agg backend): trajectories over the orthophoto, error over time, heat maps.

Each function takes plain arrays, writes one PNG and returns its path, so the figures can be tested with small
fixtures and rebuilt from a run folder without any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# (label, colour) of each trajectory the report draws, in drawing order.
SERIES_STYLE = {
    "truth": ("truth", "white"),
    "gnss_only": ("GNSS only (last fix held)", "#ff7f0e"),
    "fused_teacher": ("fused, before adaptation", "#1f77b4"),
    "fused_adapted": ("fused, after adaptation", "#2ca02c"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_trajectories(path: Path, ortho_rgb: np.ndarray, tracks_px: dict[str, np.ndarray],
                      outage_mask: np.ndarray | None = None, dpi: int = 110) -> Path:
    """Tracks ``(N, 2)`` as (row, col) pixels of ``ortho_rgb`` drawn over it, zoomed to the flown region."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 7.5))
    ax.imshow(ortho_rgb, interpolation="bilinear")
    for key, track in tracks_px.items():
        label, colour = SERIES_STYLE.get(key, (key, None))
        ax.plot(track[:, 1], track[:, 0], "-", color=colour, lw=2.2 if key == "truth" else 1.4, label=label)
    if outage_mask is not None and "truth" in tracks_px and outage_mask.any():
        truth = tracks_px["truth"]
        ax.plot(truth[outage_mask, 1], truth[outage_mask, 0], ".", color="red", ms=4, label="GNSS outage")
    _zoom_to(ax, np.concatenate([t for t in tracks_px.values()]), ortho_rgb.shape)
    ax.set_title("Trajectories over the target orthophoto")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path, dpi)


def _zoom_to(ax, points_px: np.ndarray, shape: Sequence[int], margin_px: float = 40.0) -> None:
    finite = points_px[np.all(np.isfinite(points_px), axis=1)]
    if finite.size == 0:
        return
    r0, c0 = finite.min(axis=0) - margin_px
    r1, c1 = finite.max(axis=0) + margin_px
    side = max(r1 - r0, c1 - c0)
    rc, cc = (r0 + r1) / 2, (c0 + c1) / 2
    ax.set_xlim(max(cc - side / 2, 0), min(cc + side / 2, shape[1]))
    ax.set_ylim(min(rc + side / 2, shape[0]), max(rc - side / 2, 0))


def plot_errors(path: Path, stamps_s: np.ndarray, errors_m: dict[str, np.ndarray],
                outage_mask: np.ndarray | None = None, dpi: int = 110) -> Path:
    """Horizontal error (m) over time per series, GNSS outage shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    t = stamps_s - stamps_s[0]
    if outage_mask is not None and outage_mask.any():
        ax.fill_between(t, 0, 1, where=outage_mask, transform=ax.get_xaxis_transform(), color="red", alpha=0.12,
                        label="GNSS outage")
    for key, err in errors_m.items():
        label, colour = SERIES_STYLE.get(key, (key, None))
        ax.plot(t, err, "-", color=colour, lw=1.3, label=label)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("horizontal error (m)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Position error over time")
    return _save(fig, path, dpi)


def plot_heatmaps(path: Path, samples: dict[str, np.ndarray], dpi: int = 110) -> Path:
    """One row per frame: the camera image, then the aerial patch with each model's heat map overlaid.

    ``samples`` holds ``query (N, Hq, Wq, 3)``, ``aerial (N, Ha, Wa, 3)``, ``truth_px (N, 2)`` and, per model,
    ``heatmap_<name> (N, h, w)`` and ``peak_px_<name> (N, 2)`` in aerial-patch pixels (row, col).
    """
    plt = _pyplot()
    models = [k.removeprefix("heatmap_") for k in samples if k.startswith("heatmap_")]  # insertion order
    n = len(samples["query"])
    fig, axes = plt.subplots(n, 1 + len(models), figsize=(3.0 * (1 + len(models)), 3.0 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(samples["query"][i])
        axes[i, 0].set_title(f"frame {int(samples['frame_index'][i])}" if "frame_index" in samples else "frame",
                             fontsize=9)
        for j, name in enumerate(models, start=1):
            _heatmap_panel(axes[i, j], samples, i, name)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Camera frames and the localizer's heat map over the aerial patch (x = truth, o = peak)")
    return _save(fig, path, dpi)


def _heatmap_panel(ax, samples: dict[str, np.ndarray], i: int, name: str) -> None:
    aerial = samples["aerial"][i]
    heat = samples[f"heatmap_{name}"][i]
    h, w = aerial.shape[:2]
    ax.imshow(aerial)
    ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="inferno", alpha=0.55, extent=(0, w, h, 0))
    truth = samples["truth_px"][i]
    peak = samples[f"peak_px_{name}"][i]
    inside = 0 <= truth[0] <= h and 0 <= truth[1] <= w
    if inside:
        ax.plot(truth[1], truth[0], "x", color="cyan", ms=9, mew=2)
    ax.plot(peak[1], peak[0], "o", mfc="none", color="lime", ms=9, mew=1.8)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    err = f"{samples[f'error_m_{name}'][i]:.1f} m" if f"error_m_{name}" in samples else ""
    ax.set_title(f"{name} {err}" + ("" if inside else " (truth off patch)"), fontsize=9)


def plot_hypotheses(path: Path, ortho_rgb: np.ndarray, snapshots: Sequence[dict[str, np.ndarray]],
                    latlon_to_pixel, start_s: float, dpi: int = 110) -> Path:
    """One panel per snapshot: the particles over the orthophoto (colour = weight), the truth and the estimate;
    each panel spans the whole cloud (at least 120 px). ``snapshots``: :func:`~edge_geoloc.demo.hypotheses.
    load_snapshots`; ``start_s``: the flight's first stamp (panel titles are relative to it)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(snapshots), figsize=(3.6 * len(snapshots), 3.9), squeeze=False)
    for ax, snap in zip(axes[0], snapshots, strict=True):
        rows, cols = latlon_to_pixel(snap["particles_latlon"][:, 0], snap["particles_latlon"][:, 1])
        truth, fused = (np.array(latlon_to_pixel(*snap[k])) for k in ("truth_latlon", "fused_latlon"))
        ax.imshow(ortho_rgb, interpolation="bilinear")
        order = np.argsort(snap["weights"])
        ax.scatter(np.asarray(cols)[order], np.asarray(rows)[order], c=snap["weights"][order], cmap="autumn_r", s=4,
                   alpha=0.7, linewidths=0)
        ax.plot(truth[1], truth[0], "x", color="cyan", ms=10, mew=2.2, label="truth")
        ax.plot(fused[1], fused[0], "o", mfc="none", color="white", ms=10, mew=1.8, label="estimate")
        _zoom_to(ax, np.vstack([np.stack([rows, cols], 1), truth[None], fused[None]]), ortho_rgb.shape, 60.0)
        flag = " ambiguous" if bool(snap["ambiguous"]) else ""
        ax.set_title(f"t = {float(snap['stamp_s']) - start_s:.0f} s{flag}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(loc="lower right", fontsize=7, framealpha=0.85)
    fig.suptitle("Particle filter hypotheses around the GNSS outage (colour: weight)")
    return _save(fig, path, dpi)


def _save(fig, path: Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
