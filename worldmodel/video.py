"""Frames to files: real beside predicted, and MP4 (or GIF where no encoder is installed).

Notation: frames [T, H, W, 3] uint8 images. Every file is written atomically (temp file +
os.replace); functions return the path they wrote, which says whether it became MP4 or GIF.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from worldmodel.atomic import atomic_write_bytes


def check_frames(frames: np.ndarray | Sequence[np.ndarray], name: str) -> np.ndarray:
    """Frames as a uint8 [T, H, W, 3] array, or a ValueError saying what was wrong."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError(f"{name} is an empty list; need at least one frame")
        shapes = {np.shape(f) for f in frames}
        if len(shapes) > 1:
            raise ValueError(f"{name}: frames differ in shape {sorted(shapes)}; make them equal")
        frames = np.stack(frames)
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] < 1:
        raise ValueError(f"{name} must be [T, H, W, 3] uint8 frames, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0-255), got {a.dtype}; convert with "
                         f"(x * 255).clip(0, 255).astype(np.uint8) first")
    return a


def side_by_side(real: np.ndarray, predicted: np.ndarray, gap: int = 2) -> np.ndarray:
    """Frames [T, H, 2W + gap, 3]: real on the left, predicted on the right, a white gap between."""
    a, b = check_frames(real, "real"), check_frames(predicted, "predicted")
    if a.shape != b.shape:
        raise ValueError(f"real {a.shape} and predicted {b.shape} must have the same shape")
    sep = np.full((*a.shape[:2], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([a, sep, b], axis=2)


def _mp4_bytes(frames: np.ndarray, fps: float) -> Optional[bytes]:
    """MP4 bytes through imageio's pyav or FFmpeg plugin, or None when neither is installed."""
    import imageio.v3 as iio

    for plugin in ("pyav", "FFMPEG"):
        try:
            if plugin == "pyav":
                return iio.imwrite("<bytes>", frames, extension=".mp4", plugin=plugin,
                                   codec="libx264", fps=fps)
            return iio.imwrite("<bytes>", frames, extension=".mp4", plugin=plugin, fps=fps,
                               macro_block_size=1)
        except (ImportError, ValueError, RuntimeError, OSError, TypeError):
            continue
    return None


def write_video(frames: np.ndarray | Sequence[np.ndarray], path: str | Path, fps: float = 10.0
                ) -> Path:
    """Write frames [T, H, W, 3] uint8 as a video; returns the path written.

    MP4 at `path` when an encoder is available; otherwise a looping GIF at `path` with the
    suffix .gif. (Pillow's GIF writer merges identical consecutive frames into one longer frame.)
    """
    import imageio.v3 as iio

    frames = check_frames(frames, "frames")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        data = _mp4_bytes(frames, fps)
        if data is not None:
            atomic_write_bytes(path, data)
            return path
        path = path.with_suffix(".gif")
    data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000.0 / fps, loop=0)
    atomic_write_bytes(path, data)
    return path
