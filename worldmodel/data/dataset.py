"""A dataset: a folder of episode files plus a small JSON manifest.

Layout:
    DIR/manifest.json        task, image_size, action_repeat, action_dim, state_dim, episodes, steps, version
    DIR/episode_000000.npz   one episode each (see worldmodel.data.episode), numbered from 0

Episodes are only ever added (the next free number), never rewritten, so a dataset can grow while
another process trains on it (`refresh`). The episode files are the truth: if the manifest's counts
disagree with them (a crash between writing an episode and the manifest), the files win.
One writer per folder at a time is assumed; readers may be many.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from worldmodel.atomic import atomic_write_json
from worldmodel.data.episode import DataError, Episode, image_hw, load_episode, save_episode

MANIFEST = "manifest.json"
DEFAULT_CAMERA = 0  # the camera of a manifest that records none (envs.registry's default for every task)
VERSION = 1
_EPISODE_FILE = re.compile(r"^episode_(\d+)\.npz$")
_FIXED_FIELDS = ("task", "image_size", "action_repeat", "action_dim", "state_dim")


def _episode_name(index: int) -> str:
    return f"episode_{index:06d}.npz"


def _episode_files(root: Path) -> dict[int, Path]:
    """Episode files in `root` by index (temp files of an unfinished write start with '.')."""
    found = {}
    for entry in os.scandir(root):
        m = _EPISODE_FILE.match(entry.name)
        if m and entry.is_file():
            found[int(m.group(1))] = root / entry.name
    return found


def _same(field: str, a: Any, b: Any) -> bool:
    if field == "image_size":
        return image_hw(a) == image_hw(b)
    return a == b


class EpisodeDataset:
    """Episodes of one task stored in a folder; all episodes are loaded and cached in memory.

    Indices are stable: `dataset[i]` keeps meaning the same episode, new ones are added at the end.
    """

    def __init__(self, path: str | os.PathLike, *, skip_bad: bool = False) -> None:
        self.root = Path(path)
        self.skip_bad = skip_bad
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            what = "does not exist" if not self.root.exists() else f"has no {MANIFEST}"
            raise DataError(f"no dataset at {self.root}: the folder {what}. Create one with "
                            f"`worldmodel collect --task TASK --out {self.root}` or "
                            "EpisodeDataset.create(path, task=..., image_size=..., action_repeat=..., "
                            "action_dim=..., state_dim=...)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{manifest_path}: unreadable manifest ({e})") from e
        missing = [k for k in _FIXED_FIELDS if k not in manifest] if isinstance(manifest, dict) else _FIXED_FIELDS
        if missing:
            raise DataError(f"{manifest_path}: manifest lacks fields {list(missing)}; "
                            "it was not written by EpisodeDataset.create")
        self.manifest: dict[str, Any] = manifest
        self._episodes: list[Episode] = []
        self._paths: list[Path] = []
        self._bad: set[Path] = set()
        recorded = (manifest.get("episodes"), manifest.get("steps"))
        self.refresh()
        if recorded != (len(self), self.num_steps):
            warnings.warn(f"{manifest_path} records {recorded[0]} episodes / {recorded[1]} steps but the folder "
                          f"holds {len(self)} / {self.num_steps} usable ones; using the files "
                          "(the manifest is corrected on the next append)", stacklevel=2)

    @classmethod
    def create(cls, path: str | os.PathLike, *, task: str, image_size: int | tuple[int, int],
               action_repeat: int, action_dim: int, state_dim: int, skip_bad: bool = False,
               camera: int | str | None = None) -> "EpisodeDataset":
        """A new, empty dataset folder, or the existing one at `path` if it records the same settings.

        camera: the dm_control camera the images come from, recorded when given. A manifest
        without one is camera 0's (`DEFAULT_CAMERA`): every dataset before the record was."""
        root = Path(path)
        wanted = {"task": task, "image_size": image_size if isinstance(image_size, int) else list(image_hw(image_size)),
                  "action_repeat": int(action_repeat), "action_dim": int(action_dim), "state_dim": int(state_dim)}
        if camera is not None:
            wanted["camera"] = camera
        image_hw(image_size)
        for name in ("action_repeat", "action_dim", "state_dim"):
            if wanted[name] < 1:
                raise ValueError(f"{name} must be >= 1; got {wanted[name]}")
        if (root / MANIFEST).is_file():
            dataset = cls(root, skip_bad=skip_bad)
            for name, value in wanted.items():
                have = dataset.manifest.get(name, DEFAULT_CAMERA) if name == "camera" else dataset.manifest[name]
                if not _same(name, have, value):
                    raise DataError(f"{root} already holds a dataset with {name} = {have!r}, "
                                    f"but {name} = {value!r} was asked for; use another folder")
            return dataset
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / MANIFEST, {**wanted, "episodes": 0, "steps": 0, "version": VERSION})
        return cls(root, skip_bad=skip_bad)

    # -- reading -------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Load episode files that appeared since the last look (another writer); returns how many."""
        known = set(self._paths) | self._bad
        new = [p for _, p in sorted(_episode_files(self.root).items()) if p not in known]
        bad = []
        for path in new:
            try:
                episode = load_episode(path, expect_image_size=self.manifest["image_size"],
                                       expect_action_dim=self.manifest["action_dim"])
                if episode.state_dim != self.manifest["state_dim"]:
                    raise DataError(f"{path}: states have dimension {episode.state_dim}, expected "
                                    f"{self.manifest['state_dim']} from {self.root / MANIFEST}")
            except DataError as e:
                if not self.skip_bad:
                    raise DataError(f"{e} (open the dataset with skip_bad=True to skip such files)") from e
                self._bad.add(path)
                bad.append(str(e))
                continue
            self._episodes.append(episode)
            self._paths.append(path)
        if bad:
            warnings.warn(f"skipped {len(bad)} unusable episode files in {self.root}:\n  " + "\n  ".join(bad),
                          stacklevel=2)
        self.manifest = {**self.manifest, "episodes": len(self._episodes), "steps": self.num_steps}
        return len(new) - len(bad)

    def __len__(self) -> int:
        return len(self._episodes)

    def __getitem__(self, i: int) -> Episode:
        return self._episodes[i]

    @property
    def episodes(self) -> list[Episode]:
        """All loaded episodes, in index order (a copy of the list; the episodes are shared)."""
        return list(self._episodes)

    @property
    def episode_paths(self) -> list[Path]:
        return list(self._paths)

    @property
    def num_steps(self) -> int:
        """Total transitions over all episodes."""
        return sum(e.length for e in self._episodes)

    @property
    def bad_paths(self) -> list[Path]:
        """Files skipped as unusable (only with skip_bad=True)."""
        return sorted(self._bad)

    # -- writing -------------------------------------------------------------------------------

    def next_index(self) -> int:
        """The number the next appended episode's file gets: one past the highest on disk (not
        `len(self)`, which is smaller once a damaged episode file has been deleted)."""
        return max(_episode_files(self.root), default=-1) + 1

    def append(self, episode: Episode) -> Path:
        """Write `episode` as the next numbered file, then the manifest; returns the file's path."""
        self._check_compatible(episode)
        self.refresh()  # see files another writer added, so the next number is really free
        index = self.next_index()
        path = self.root / _episode_name(index)
        if path.exists():  # only reachable if another writer raced us; never overwrite
            raise DataError(f"{path} appeared while appending; two writers on one dataset folder")
        save_episode(path, episode)
        stored = Episode(images=episode.images.copy(), actions=episode.actions.copy(),
                         rewards=episode.rewards.copy(), states=episode.states.copy(), meta=dict(episode.meta))
        for name in ("images", "actions", "rewards", "states"):
            getattr(stored, name).flags.writeable = False
        self._episodes.append(stored)
        self._paths.append(path)
        self.manifest = {**self.manifest, "episodes": len(self._episodes), "steps": self.num_steps}
        atomic_write_json(self.root / MANIFEST, self.manifest)
        return path

    def _check_compatible(self, episode: Episode) -> None:
        if not isinstance(episode, Episode):
            raise TypeError(f"append expects an Episode; got {type(episode).__name__}")
        m = self.manifest
        checks = [("image_size", episode.image_size, image_hw(m["image_size"])),
                  ("action_dim", episode.action_dim, m["action_dim"]),
                  ("state_dim", episode.state_dim, m["state_dim"])]
        checks += [(k, episode.meta[k], m[k]) for k in ("task", "action_repeat") if k in episode.meta]
        for name, seen, expected in checks:
            if not _same(name, seen, expected):
                raise DataError(f"cannot append to {self.root}: episode has {name} = {seen!r}, "
                                f"the dataset has {name} = {expected!r}")

    def __repr__(self) -> str:
        return (f"EpisodeDataset({str(self.root)!r}, task={self.manifest['task']!r}, "
                f"episodes={len(self)}, steps={self.num_steps})")
