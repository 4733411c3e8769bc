"""Every figure and video writer produces a readable file of the expected size; bad input raises."""
from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from worldmodel import viz


def _ring(n: int = 300, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    theta, vel = rng.uniform(-np.pi, np.pi, n), rng.normal(0, 1, n)
    z = np.stack([np.cos(theta), np.sin(theta), 0.1 * vel, rng.normal(0, 0.01, n)], axis=1)
    return z, {"angle": theta, "angular velocity": vel}


def _frames(t: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, 32, 32, 3), dtype=np.uint8)


def _image(path: Path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 0
    img = iio.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def test_plot_latent_geometry_writes_a_png(tmp_path: Path) -> None:
    z, colours = _ring()
    out = viz.plot_latent_geometry(z, colours, tmp_path / "geo.png", title="ring",
                                   r2={"linear": 0.91, "knn": 0.99})
    img = _image(out)
    assert img.shape[0] > 300 and img.shape[1] > 600  # two rows x two views
    assert img[..., :3].std() > 10  # not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temp file left behind
    mask = os.umask(0)  # files get open()'s permissions, not mkstemp's owner-only 0600
    os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in tmp_path.iterdir() if p.is_file())


def test_pca_finds_the_plane_of_the_ring() -> None:
    z, _ = _ring()
    proj, ratio = viz.pca_2d(z)
    assert proj.shape == (300, 2) and ratio.sum() > 0.95  # cos/sin carry nearly all variance
    one_d, ratio1 = viz.pca_2d(z[:, :1])
    assert np.all(one_d[:, 1] == 0) and ratio1[1] == 0


def test_plot_prediction_strip(tmp_path: Path) -> None:
    true, pred = _frames(8, 0), _frames(8, 1)
    img = _image(viz.plot_prediction_strip(true, pred, tmp_path / "strip.png", context=3))
    assert img.shape[1] > img.shape[0]  # a wide strip


def test_plot_training_curves(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 100.0 / (s + 1), "kl": 3.0 + 0.01 * s,
                         "wall_time": s * 0.1}) for s in range(0, 200, 10)]
    metrics.write_text("\n".join(lines) + "\n")
    img = _image(viz.plot_training_curves(metrics, tmp_path / "curves.png"))
    wide = img.shape[1]
    img1 = _image(viz.plot_training_curves(metrics, tmp_path / "one.png", keys=["kl"]))
    assert img1.shape[1] < wide  # one panel instead of two (wall_time is not plotted)
    with pytest.raises(ValueError, match=r"metrics \['nope'\] not in .*available: \['kl', 'loss'\]"):
        viz.plot_training_curves(metrics, tmp_path / "bad.png", keys=["nope"])


def test_plot_learning_curves(tmp_path: Path) -> None:
    """Seeds with different evaluation points, a series with no curve (its folders are gone) and
    anchors: one readable PNG; the legend grows with the series, so more series, a taller figure."""
    two = [{"label": "cpu: 551 ± 7, 3 seeds (curves of 2)",
            "curves": [[(15e3, 220.0), (25e3, 300.0), (35e3, 250.0)], [(15e3, 200.0), (25e3, 280.0)]],
            "final": (1e5, 551.0, 7.0)},
           {"label": "folders gone", "curves": [], "final": (1e5, 430.0, 7.0)}]
    img = _image(viz.plot_learning_curves(two, tmp_path / "c.png", anchors={"PlaNet": 297, "CURL": 582,
                                                                           "DreamerV3": 598}))
    one = _image(viz.plot_learning_curves(two[:1], tmp_path / "c1.png"))
    assert img.shape[0] > one.shape[0]
    with pytest.raises(ValueError, match="no series"):
        viz.plot_learning_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="'label' str and a 'curves' list"):
        viz.plot_learning_curves([{"curves": []}], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_state_estimate(tmp_path: Path) -> None:
    t = np.linspace(0, 4, 50)
    true = np.stack([0.1 * np.sin(t), 0.1 * np.cos(t)], axis=1)
    img = _image(viz.plot_state_estimate(true, true + 0.02, np.sin(t[:-1])[:, None], tmp_path / "s.png",
                                         tolerance=0.5, title="one episode"))
    assert img.shape[0] > 400 and img[..., :3].std() > 10  # three rows, drawn
    with pytest.raises(ValueError, match="49 actions"):
        viz.plot_state_estimate(true, true, np.zeros((50, 1)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(angle, velocity\) \[T, 2\]"):
        viz.plot_state_estimate(true, true[:, :1], np.zeros((49, 1)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_write_video_and_side_by_side(tmp_path: Path) -> None:
    real, pred = _frames(6, 2), _frames(6, 3)
    both = viz.side_by_side(real, pred)
    assert both.shape == (6, 32, 66, 3)
    np.testing.assert_array_equal(both[:, :, :32], real)
    np.testing.assert_array_equal(both[:, :, 34:], pred)
    out = viz.write_video(both, tmp_path / "video.mp4", fps=5)
    assert out.suffix in (".mp4", ".gif") and out.stat().st_size > 0
    video = iio.imread(out)
    assert video.shape[0] == 6 and video.shape[1:3] == (32, 66)
    gif = viz.write_video(list(real), tmp_path / "list.gif", fps=5)  # a list of frames works
    assert gif.suffix == ".gif" and iio.imread(gif).shape[0] == 6


def test_geometry_over_training_gif(tmp_path: Path) -> None:
    snaps = []
    for i, step in enumerate((0, 500, 1000)):
        z, colours = _ring(seed=i)
        z = z + np.random.default_rng(10 + i).normal(0, 1.0 / (i + 1), z.shape)  # sharpening
        snaps.append((step, z, colours))
    out = viz.geometry_over_training_gif(snaps, tmp_path / "geo", r2=[None, {"linear": 0.5},
                                                                       {"linear": 0.9}])
    assert out.suffix == ".gif"
    frames = iio.imread(out)
    assert frames.shape[0] == 3 and frames.ndim == 4


def test_bad_input_raises_clear_errors(tmp_path: Path) -> None:
    z, colours = _ring()
    with pytest.raises(ValueError, match="colour 'angle' has 299 values but there are 300"):
        viz.plot_latent_geometry(z, {"angle": colours["angle"][:-1]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"true_frames \(8, 32, 32, 3\) and predicted \(7, 32"):
        viz.plot_prediction_strip(_frames(8, 0), _frames(7, 0), tmp_path / "x.png", context=2)
    with pytest.raises(ValueError, match="context must be an int in"):
        viz.plot_prediction_strip(_frames(4, 0), _frames(4, 0), tmp_path / "x.png", context=9)
    with pytest.raises(ValueError, match="must be uint8"):
        viz.write_video(np.zeros((3, 8, 8, 3), np.float32), tmp_path / "x.gif")
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\].*got shape \(8, 8, 3\)"):
        viz.write_video(np.zeros((8, 8, 3), np.uint8), tmp_path / "x.gif")
    with pytest.raises(ValueError, match="must have the same shape"):
        viz.side_by_side(_frames(3, 0), _frames(4, 0))
    with pytest.raises(ValueError, match="frames differ in shape"):
        viz.write_video([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)],
                        tmp_path / "x.gif")
    with pytest.raises(ValueError, match="snapshot 1 colours"):
        viz.geometry_over_training_gif([(0, z, colours), (1, z, {"other": colours["angle"]})],
                                       tmp_path / "x.gif")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.gif").exists()
