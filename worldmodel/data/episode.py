"""One recorded episode, and its file format on disk.

Notation: an episode of T transitions holds T+1 observations o_0..o_T and T actions a_0..a_{T-1};
a_t is applied after seeing o_t and r_t is the reward received for it (it arrives with o_{t+1}),
the convention of `worldmodel.data.batch`.
    images   [T+1, H, W, 3] uint8    rendered observations o_t
    actions  [T, A]         float32  a_t
    rewards  [T]            float32  r_t
    states   [T+1, S]       float32  true physical state at o_t (for geometry plots and the oracle)

On disk an episode is one compressed `.npz` (numpy zip) holding those four arrays plus `meta`, a
JSON string (task, image size, action repeat, seed, policy, ...), loadable without pickle.
Files are written atomically, so a crash leaves the old file or the complete new one.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.atomic import atomic_open

FORMAT_VERSION = 1
_ARRAYS = ("images", "actions", "rewards", "states")


class DataError(ValueError):
    """A dataset or episode file that cannot be used: corrupt, incomplete or mismatched."""


def image_hw(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(H, W) from an image size given as one int (square) or a pair; JSON turns pairs into lists."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        return int(image_size), int(image_size)
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size must be an int or a pair (H, W); got {image_size!r}")


@dataclass(frozen=True, eq=False)
class Episode:
    """T transitions of one task; shapes and dtypes are checked on construction."""

    images: np.ndarray   # [T+1, H, W, 3] uint8
    actions: np.ndarray  # [T, A] float32
    rewards: np.ndarray  # [T] float32
    states: np.ndarray   # [T+1, S] float32
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            if not isinstance(getattr(self, name), np.ndarray):
                raise ValueError(f"Episode.{name} must be a numpy array; got {type(getattr(self, name)).__name__}")
        _check(self.actions, "actions", np.float32, (None, None), "[T, A]", None)
        T = self.actions.shape[0]
        _check(self.images, "images", np.uint8, (T + 1, None, None, 3), "[T+1, H, W, 3]", T)
        _check(self.rewards, "rewards", np.float32, (T,), "[T]", T)
        _check(self.states, "states", np.float32, (T + 1, None), "[T+1, S]", T)
        if T < 1:
            raise ValueError("Episode needs at least one transition (T >= 1); got T = 0")
        for name in ("actions", "rewards", "states"):
            bad = int(np.size(getattr(self, name)) - np.count_nonzero(np.isfinite(getattr(self, name))))
            if bad:
                raise ValueError(f"Episode.{name} holds {bad} non-finite values (NaN/inf); "
                                 "fix the recording before saving it")
        if not isinstance(self.meta, dict):
            raise ValueError(f"Episode.meta must be a dict; got {type(self.meta).__name__}")
        try:
            json.dumps(self.meta)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Episode.meta must be JSON-serialisable (plain str/int/float/list/dict): {e}") from e

    @property
    def length(self) -> int:
        """T, the number of transitions (one less than the number of images)."""
        return int(self.actions.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def state_dim(self) -> int:
        return int(self.states.shape[1])


def _check(x: np.ndarray, name: str, dtype: type, shape: tuple[int | None, ...], layout: str,
           T: int | None) -> None:
    """Raise ValueError naming `name` unless x has `dtype` and `shape` (None = any size)."""
    if x.dtype != dtype:
        raise ValueError(f"Episode.{name} must be {np.dtype(dtype).name} {layout}; got dtype {x.dtype} "
                         f"(convert with .astype(np.{np.dtype(dtype).name}))")
    ok = x.ndim == len(shape) and all(want is None or want == got for want, got in zip(shape, x.shape))
    if not ok:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        given = "" if T is None else f" with T = {T} transitions (the length of actions)"
        raise ValueError(f"Episode.{name} has shape {tuple(x.shape)}, expected {layout} = {expected}{given}")


def save_episode(path: str | os.PathLike, episode: Episode) -> Path:
    """Write `episode` to one compressed .npz at `path`, atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"episode files end in .npz; got {path}")
    meta = json.dumps({**episode.meta, "format_version": FORMAT_VERSION}, sort_keys=True)
    with atomic_open(path) as f:
        np.savez_compressed(f, images=episode.images, actions=episode.actions, rewards=episode.rewards,
                            states=episode.states, meta=np.array(meta))
    return path


def load_episode(path: str | os.PathLike, *, expect_image_size: int | tuple[int, int] | None = None,
                 expect_action_dim: int | None = None) -> Episode:
    """Read an episode written by `save_episode`; DataError naming the file and the problem.

    The returned arrays are read-only, so an episode cached by a dataset cannot be changed
    behind its back.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*_ARRAYS, "meta") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing} (found {sorted(z.files)}); "
                                "not an episode file written by worldmodel.data.save_episode")
            arrays = {k: z[k] for k in _ARRAYS}
            meta_raw = z["meta"]
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{path}: episode file does not exist") from e
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: truncated or corrupt episode file ({type(e).__name__}: {e}); "
                        "delete it or open the dataset with skip_bad=True") from e
    try:
        meta = json.loads(str(meta_raw))
        if not isinstance(meta, dict):
            raise ValueError(f"meta is a {type(meta).__name__}, not a dict")
    except ValueError as e:
        raise DataError(f"{path}: unreadable meta ({e})") from e
    meta.pop("format_version", None)
    for x in arrays.values():
        x.flags.writeable = False
    try:
        episode = Episode(**arrays, meta=meta)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from e
    if expect_image_size is not None and episode.image_size != image_hw(expect_image_size):
        raise DataError(f"{path}: images are {episode.image_size[0]}x{episode.image_size[1]}, expected "
                        f"{image_hw(expect_image_size)[0]}x{image_hw(expect_image_size)[1]}; "
                        "this file belongs to a dataset recorded at another image size")
    if expect_action_dim is not None and episode.action_dim != expect_action_dim:
        raise DataError(f"{path}: actions have dimension {episode.action_dim}, expected {expect_action_dim}; "
                        "this file belongs to a dataset of another task")
    return episode
