"""Pictures and videos a person reads at a glance: latent geometry, predictions, training curves.

Notation: z [N, D] latents; colours {name: values [N]} true quantities to colour points by
(angles in radians get the cyclic 'twilight' map, so -π and π share a colour); frames
[T, H, W, 3] uint8 images. Every function writes one file atomically (temp file + os.replace)
and returns the path it wrote. Figures are drawn with matplotlib's Agg canvas directly, so no
global backend is switched and nothing needs a display. Videos are written by
`worldmodel.video` (MP4 where imageio has an FFmpeg or PyAV plugin, GIF otherwise).
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from worldmodel.atomic import atomic_write_bytes
from worldmodel.video import check_frames as _frames
from worldmodel.video import side_by_side, write_video  # noqa: F401  (part of viz's API)

_FIG_DPI = 100
_SKIP_KEYS = frozenset({"step", "wall_time", "frames_per_s", "time", "epoch"})


# ------------------------------------------------------------------------------------ helpers
def _figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_FIG_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_FIG_DPI)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _to_rgb(fig) -> np.ndarray:
    """The figure rendered to an RGB array [H, W, 3] uint8 (fixed size: the figure size)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _latents(latents: np.ndarray) -> np.ndarray:
    z = np.asarray(latents.detach().cpu() if hasattr(latents, "detach") else latents,
                   dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"latents must be [N, D] with N >= 2, got shape {z.shape}")
    return z


def _check_colours(colours: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    if not colours:
        raise ValueError("colours is empty; give at least one {name: values [N]}")
    out = {}
    for name, values in colours.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape[0] != n:
            raise ValueError(f"colour {name!r} has {v.shape[0]} values but there are {n} latents")
        out[name] = v
    return out


def pca_2d(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection [N, 2] onto the two leading principal axes and their explained-variance ratio
    [2] (zero-padded when D = 1)."""
    z = _latents(latents)
    centred = z - z.mean(axis=0)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    proj = np.zeros((len(z), 2))
    proj[:, :k] = centred @ vt[:k].T
    var = sing ** 2
    ratio = np.zeros(2)
    ratio[:k] = var[:k] / var.sum() if var.sum() > 0 else 0.0
    return proj, ratio


def _is_cyclic(name: str) -> bool:
    return "angle" in name.lower() and "velocity" not in name.lower()


def _scatter(ax, xy: np.ndarray, values: np.ndarray, name: str, fig) -> None:
    cyclic = _is_cyclic(name)
    kwargs = dict(cmap="twilight", vmin=-math.pi, vmax=math.pi) if cyclic else dict(cmap="viridis")
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=6, linewidths=0, **kwargs)
    fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02).set_label(name + (" (rad)" if cyclic else ""))


def _draw_geometry(fig, z: np.ndarray, colours: dict[str, np.ndarray], title: str,
                   r2: Optional[dict], own_axes: bool = True) -> None:
    proj, ratio = pca_2d(z)
    raw = z[:, :2] if z.shape[1] >= 2 else np.concatenate([z, np.zeros((len(z), 1))], axis=1)
    views = [(proj, f"PCA 1 ({ratio[0]:.0%})", f"PCA 2 ({ratio[1]:.0%})")]
    if own_axes:
        views.append((raw, "latent[0]", "latent[1]" if z.shape[1] >= 2 else "(D = 1)"))
    rows, cols = len(colours), len(views)
    for r, (name, values) in enumerate(colours.items()):
        for c, (xy, xl, yl) in enumerate(views):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            _scatter(ax, xy, values, name, fig)
            ax.set_aspect("equal", adjustable="datalim")  # distances read true in both views
            ax.set_xlabel(xl, fontsize=8)
            ax.set_ylabel(yl, fontsize=8)
            ax.tick_params(labelsize=7)
    text = title
    if r2:
        text += "\n" + "   ".join(f"R² {k}: {v:.3f}" for k, v in r2.items())
    fig.suptitle(text, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))  # 0.6 inch for the title


# ------------------------------------------------------------------------------------ figures
def plot_latent_geometry(latents: np.ndarray, colours: dict[str, np.ndarray], path: str | Path,
                         *, title: str = "latent geometry", r2: Optional[dict] = None) -> Path:
    """Latents [N, D] in 2-D (PCA, and the latent's own first two axes), one row per colouring.

    A good latent of the pendulum shows the angle as a ring (continuous colour around it) and
    the angular velocity as a smooth gradient; R² of the read-outs is printed under the title.
    """
    z = _latents(latents)
    colours = _check_colours(colours, len(z))
    fig = _figure(9.0, 3.6 * len(colours) + 0.6)
    _draw_geometry(fig, z, colours, title, r2)
    return _save_png(fig, path)


def plot_prediction_strip(true_frames: np.ndarray, predicted: np.ndarray, path: str | Path, *,
                          context: int) -> Path:
    """True frames [T, H, W, 3] above predicted ones; the first `context` columns (frames the
    model filtered, not predicted) are labelled and framed in grey, the rest in orange."""
    true = _frames(true_frames, "true_frames")
    pred = _frames(predicted, "predicted")
    if true.shape != pred.shape:
        raise ValueError(f"true_frames {true.shape} and predicted {pred.shape} must match")
    T = len(true)
    if not isinstance(context, (int, np.integer)) or not 0 <= context <= T:
        raise ValueError(f"context must be an int in [0, T={T}], got {context!r}")
    fig = _figure(max(1.1 * T, 3.0), 2.6)
    for t in range(T):
        for row, (frames, label) in enumerate(((true, "true"), (pred, "predicted"))):
            ax = fig.add_subplot(2, T, row * T + t + 1)
            ax.imshow(frames[t])
            ax.set_xticks([])
            ax.set_yticks([])
            edge = "0.6" if t < context else "tab:orange"
            for spine in ax.spines.values():
                spine.set_edgecolor(edge)
                spine.set_linewidth(2.5)
            if row == 0:
                ax.set_title("ctx" if t < context else f"+{t - context + 1}", fontsize=7)
            if t == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"open-loop prediction: {context} context frames (grey), "
                 f"{T - context} predicted (orange)", fontsize=9)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.8, bottom=0.02, wspace=0.05, hspace=0.08)
    return _save_png(fig, path)


def plot_training_curves(metrics_jsonl_path: str | Path, path: str | Path,
                         keys: Optional[Iterable[str]] = None) -> Path:
    """Every numeric metric (or `keys`) of a metrics.jsonl against `step`, one panel each; the y
    axis is logarithmic when a metric is positive and spans more than a factor of 10."""
    from worldmodel.metrics_log import read_metrics

    records = read_metrics(metrics_jsonl_path)
    records = [r for r in records if isinstance(r.get("step"), (int, float))]
    if not records:
        raise ValueError(f"{metrics_jsonl_path}: no records with a 'step'; nothing to plot")
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    available = sorted({k for r in records for k, v in r.items()
                        if k not in _SKIP_KEYS and numeric(v)})
    keys = available if keys is None else list(keys)
    missing = [k for k in keys if k not in available]
    if missing or not keys:
        raise ValueError(f"metrics {missing or '(none)'} not in {metrics_jsonl_path}; "
                         f"available: {available}")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = _figure(4.0 * cols, 2.8 * rows)
    for i, key in enumerate(keys):
        pts = np.array([(r["step"], r[key]) for r in records if numeric(r.get(key))], float)
        pts = pts[np.isfinite(pts[:, 1])]
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(pts[:, 0], pts[:, 1], lw=1.2)
        if len(pts) and (pts[:, 1] > 0).all() and pts[:, 1].max() > 10 * pts[:, 1].min():
            ax.set_yscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_goal_cost(by_angle: list[float | None], path_angles: np.ndarray | None,
                   path_costs: np.ndarray | None, path: str | Path, *, title: str = "") -> Path:
    """Left: cost by |angle| bin; right (when given): angle and cost along a trajectory."""
    panels = 2 if path_costs is not None else 1
    fig = _figure(4.6 * panels, 3.2)
    ax = fig.add_subplot(1, panels, 1)
    bins = len(by_angle)
    centres = (np.arange(bins) + 0.5) * 180 / bins
    ax.bar(centres, [np.nan if c is None else c for c in by_angle], width=0.8 * 180 / bins)
    ax.set_xlabel("|angle| (degrees, 0 = upright)", fontsize=8)
    ax.set_ylabel("mean ‖z − z_goal‖² (held-out)", fontsize=8)
    ax.set_title("goal cost by pose", fontsize=9)
    ax.tick_params(labelsize=7)
    if path_costs is not None:
        ax = fig.add_subplot(1, panels, 2)
        steps = np.arange(len(path_costs))
        ax.semilogy(steps, np.maximum(path_costs, 1e-3), color="C3", lw=1.2, label="‖z − z_goal‖²")
        ax.set_xlabel("step of the oracle's episode", fontsize=8)
        ax.set_ylabel("latent goal cost", fontsize=8, color="C3")
        ax.tick_params(labelsize=7)
        twin = ax.twinx()
        twin.plot(steps, np.degrees(np.abs(path_angles)), color="C0", lw=1.0)
        twin.set_ylabel("|angle| (degrees)", fontsize=8, color="C0")
        twin.tick_params(labelsize=7)
        ax.set_title("along the oracle's swing-up", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_state_estimate(true: np.ndarray, estimated: np.ndarray, actions: np.ndarray, path: str | Path, *,
                        tolerance: float | None = None, title: str = "") -> Path:
    """Three rows over one closed-loop episode: the pole's true angle and the planner's estimate of
    it, the same for its velocity, and the actions taken. true, estimated: (angle, velocity)
    [T, 2]; actions [T - 1, A]; `tolerance` shades the goal region |angle| < tolerance."""
    true, estimated, actions = np.asarray(true, float), np.asarray(estimated, float), np.asarray(actions, float)
    if true.ndim != 2 or true.shape[1] != 2 or estimated.shape != true.shape:
        raise ValueError(f"true and estimated must both be (angle, velocity) [T, 2], got {true.shape} "
                         f"and {estimated.shape}")
    if actions.ndim == 1:  # one action dimension, given flat [T - 1]
        actions = actions[:, None]
    if len(actions) != len(true) - 1:
        raise ValueError(f"{len(true)} states need {len(true) - 1} actions between them, got {len(actions)}")
    fig = _figure(7.5, 5.6)
    steps = np.arange(len(true))
    for row, (label, unit) in enumerate((("angle", "rad, 0 = upright"), ("velocity", "rad/s"))):
        ax = fig.add_subplot(3, 1, row + 1)
        if row == 0 and tolerance is not None:
            ax.axhspan(-tolerance, tolerance, color="0.9", label="goal region")
        ax.plot(steps, true[:, row], color="k", lw=1.2, label="true")
        ax.plot(steps, estimated[:, row], color="C3", lw=1.0, label="the planner's estimate")
        ax.set_ylabel(f"{label} ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
        if row == 0:
            ax.legend(fontsize=7, loc="upper left")
    ax = fig.add_subplot(3, 1, 3)
    ax.step(steps[:-1], actions, where="post", lw=1.0)
    ax.set_ylabel("action", fontsize=8)
    ax.set_xlabel("env step", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_learning_curves(series: Sequence[dict[str, Any]], path: str | Path, *,
                         anchors: dict[str, float] | None = None, title: str = "",
                         xlabel: str = "environment steps", ylabel: str = "return") -> Path:
    """Return against data, one colour per setting: each seed's curve thin, the seeds' mean at the
    points all of them share thick, the final result as a point with its error bar, and published
    results as dashed lines. Each series: {"label", "curves": [[(x, y), ...] per seed],
    "final": (x, mean, stderr) or None}."""
    if not series:
        raise ValueError("plot_learning_curves: no series to plot")
    for item in series:
        if not isinstance(item.get("label"), str) or not isinstance(item.get("curves"), (list, tuple)):
            raise ValueError(f"each series needs a 'label' str and a 'curves' list, got keys "
                             f"{sorted(item)}")
    # long labels (a setting's --set words) wrap, so the legend keeps to the figure's width
    labels = [textwrap.fill(item["label"], 120, subsequent_indent="    ") for item in series]
    fig = _figure(8.0, 4.4 + 0.22 * sum(label.count("\n") + 1 for label in labels))
    ax = fig.add_subplot(1, 1, 1)
    top = 0.0
    for i, item in enumerate(series):
        colour = f"C{i % 10}"
        curves = [np.asarray(c, dtype=float).reshape(-1, 2) for c in item["curves"] if len(c)]
        for c in curves:
            ax.plot(c[:, 0], c[:, 1], color=colour, lw=0.7, alpha=0.35)
            top = max(top, float(c[:, 1].max()))
        if curves:
            shared = sorted(set.intersection(*(set(c[:, 0].tolist()) for c in curves)))
            mean = [np.mean([c[c[:, 0] == x, 1][0] for c in curves]) for x in shared]
            ax.plot(shared, mean, color=colour, lw=2.0)
        final = item.get("final")
        if final is not None:
            ax.errorbar([final[0]], [final[1]], yerr=[final[2]], fmt="o", color=colour, capsize=3)
            top = max(top, float(final[1]) + float(final[2]))
        ax.plot([], [], color=colour, lw=2.0, marker="o" if final is not None else None,
                label=labels[i])  # one legend entry per series
    ranked = sorted((anchors or {}).items(), key=lambda kv: kv[1])
    for k, (name, value) in enumerate(ranked):
        ax.axhline(value, color="0.45", lw=0.8, ls="--")
        # an anchor just below the next one is labelled under its line, so the two labels part
        crowded = k + 1 < len(ranked) and ranked[k + 1][1] - value < 0.04 * max(abs(value), 1.0)
        ax.annotate(f"{name} {value:g}", (0.005, value), xycoords=("axes fraction", "data"),
                    fontsize=7, color="0.3", va="top" if crowded else "bottom")
        top = max(top, float(value))
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0, top=1.08 * top if top > 0 else None)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save_png(fig, path)


# ------------------------------------------------------------------------------------ video
def geometry_over_training_gif(snapshots: Sequence[tuple[int, np.ndarray, dict[str, np.ndarray]]],
                               path: str | Path, *, fps: float = 2.0,
                               r2: Optional[Sequence[Optional[dict]]] = None) -> Path:
    """One frame per checkpoint: (step, latents [N, D], colours) drawn as the PCA view of
    `plot_latent_geometry`, to watch the latent space unfold during training. Returns the path
    (a GIF; MP4 if `path` ends in .mp4 and an encoder exists)."""
    if not snapshots:
        raise ValueError("snapshots is empty; give a list of (step, latents, colours)")
    if r2 is not None and len(r2) != len(snapshots):
        raise ValueError(f"r2 has {len(r2)} entries but there are {len(snapshots)} snapshots")
    names = None
    images = []
    for i, snap in enumerate(snapshots):
        if len(snap) != 3:
            raise ValueError(f"snapshot {i} must be (step, latents, colours), got {len(snap)} items")
        step, latents, colours = snap
        z = _latents(latents)
        colours = _check_colours(colours, len(z))
        if names is None:
            names = list(colours)
        elif list(colours) != names:
            raise ValueError(f"snapshot {i} colours {list(colours)} differ from the first {names}")
        fig = _figure(4.6 * len(colours), 4.2)
        proj, ratio = pca_2d(z)
        for c, (name, values) in enumerate(colours.items()):
            ax = fig.add_subplot(1, len(colours), c + 1)
            _scatter(ax, proj, values, name, fig)
            ax.set_xlabel(f"PCA 1 ({ratio[0]:.0%})", fontsize=8)
            ax.set_ylabel(f"PCA 2 ({ratio[1]:.0%})", fontsize=8)
            ax.tick_params(labelsize=7)
        text = f"step {step}"
        if r2 is not None and r2[i]:
            text += "   " + "   ".join(f"R² {k}: {v:.3f}" for k, v in r2[i].items())
        fig.suptitle(text, fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
        images.append(_to_rgb(fig))
    path = Path(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        path = path.with_suffix(".gif")
    return write_video(np.stack(images), path, fps=fps)
