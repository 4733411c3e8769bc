"""Fixed-length training chunks drawn uniformly from a set of episodes.

Notation: B chunks of length L per batch; an episode of T transitions (T+1 observations) has
T-L+2 valid windows, the window starting at t covering o_t..o_{t+L-1}, a_t..a_{t+L-1} and
r_t..r_{t+L-1} (alignment of `worldmodel.data.batch`). A chunk's L observations use only its first
L-1 transitions, so the last window may end at the episode's final observation o_T: its last action
and reward, which lead outside the episode and which the model never reads, are zeros. (Stopping at
t = T-L instead would never train the final transition o_{T-1} -> o_T.) Windows never cross
episode boundaries; each valid window of the whole dataset is equally likely, so an episode is
chosen with probability proportional to its window count.

Pixels x in {0..255} become floats in [-0.5, 0.5]:
    plain:            x / 255 - 0.5
    quantize_bits=b:  floor(x / 2^(8-b)) / 2^b - 0.5 + u,  u ~ U(0, 2^-b)
the second is PlaNet's 5-bit image preprocessing with dequantisation noise (Hafner et al. 2019,
"Learning Latent Dynamics for Planning from Pixels", Sec. 5 / App. A).

All episodes are copied into flat, growable uint8/float32 buffers (images channel-first), so a batch
is a handful of vectorised index operations, not a Python loop over chunks.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from worldmodel.checkpoint import restore_generator
from worldmodel.data.batch import Batch
from worldmodel.data.episode import DataError, Episode


class _Growable:
    """A tensor whose first axis grows by appending, with capacity doubling (amortised O(1))."""

    def __init__(self, row_shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.data = torch.empty((0, *row_shape), dtype=dtype)
        self.size = 0

    def extend(self, rows: np.ndarray) -> int:
        """Copy `rows` [N, *row_shape] in at the end; returns the index of the first of them."""
        start, need = self.size, self.size + rows.shape[0]
        if need > self.data.shape[0]:
            grown = torch.empty((max(need, 2 * self.data.shape[0]), *self.data.shape[1:]), dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[start:need].numpy()[...] = rows  # numpy view: no extra copy, works on read-only rows
        self.size = need
        return start


class ChunkSampler:
    """Draws `Batch`es of `batch_size` chunks of `length` steps from an EpisodeDataset (or list of Episodes)."""

    def __init__(self, dataset: Any, batch_size: int, length: int, *, seed: int = 0,
                 quantize_bits: int | None = None, device: torch.device | str = "cpu") -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if int(length) < 1:
            raise ValueError(f"length must be >= 1; got {length}")
        if quantize_bits is not None and not 1 <= int(quantize_bits) <= 8:
            raise ValueError(f"quantize_bits must be in 1..8 (PlaNet uses 5) or None; got {quantize_bits}")
        self.dataset = dataset
        self.batch_size, self.length = int(batch_size), int(length)
        self.quantize_bits = None if quantize_bits is None else int(quantize_bits)
        self.device = torch.device(device)
        # Windows are drawn on the CPU (the data lives there); dequantisation noise where the batch is
        # made, so a GPU never waits for CPU random numbers. Both are seeded from `seed`.
        self.generator = torch.Generator().manual_seed(int(seed))
        self.noise_generator = torch.Generator(device=self.device).manual_seed(int(seed) + 1)
        self._images: _Growable | None = None  # rows [3, H, W] uint8, T+1 per episode
        self._states: _Growable | None = None  # rows [S] float32, T+1 per episode
        self._actions: _Growable | None = None  # rows [A] float32, T+1 per episode (the last zero)
        self._rewards = _Growable((), torch.float32)  # T+1 per episode (the last zero)
        self._image_start: list[int] = []
        self._step_start: list[int] = []
        self._lengths: list[int] = []
        self._windows: tuple[torch.Tensor, ...] | None = None
        self._add(self._episode_list())
        self._window_table()  # fail now, not at the first update, if no chunk of length L exists

    # -- episode bookkeeping -----------------------------------------------------------------------

    def _episode_list(self) -> Sequence[Episode]:
        return self.dataset.episodes if hasattr(self.dataset, "episodes") else self.dataset

    def refresh(self) -> int:
        """Pick up episodes appended to the dataset since the last call; returns how many."""
        if hasattr(self.dataset, "refresh"):
            self.dataset.refresh()
        episodes = self._episode_list()
        new = episodes[len(self._lengths):]
        self._add(new)
        return len(new)

    def _add(self, episodes: Sequence[Episode]) -> None:
        for ep in episodes:
            if not isinstance(ep, Episode):
                raise TypeError(f"ChunkSampler needs Episodes; got {type(ep).__name__}")
            images = ep.images.transpose(0, 3, 1, 2)  # [T+1, 3, H, W]
            if self._images is None:
                self._images = _Growable(tuple(images.shape[1:]), torch.uint8)
                self._states = _Growable((ep.state_dim,), torch.float32)
                self._actions = _Growable((ep.action_dim,), torch.float32)
            elif (tuple(images.shape[1:]) != tuple(self._images.data.shape[1:])
                  or ep.action_dim != self._actions.data.shape[1] or ep.state_dim != self._states.data.shape[1]):
                raise DataError(f"episode {len(self._lengths)} has images {tuple(images.shape[1:])}, action dim "
                                f"{ep.action_dim}, state dim {ep.state_dim}; earlier episodes have "
                                f"{tuple(self._images.data.shape[1:])}, {self._actions.data.shape[1]}, "
                                f"{self._states.data.shape[1]}; one sampler needs one kind of episode")
            self._image_start.append(self._images.extend(images))
            self._states.extend(ep.states)
            # one zero row past the last transition: the last window's unread action and reward
            self._step_start.append(self._actions.extend(np.concatenate(
                [ep.actions, np.zeros((1, ep.action_dim), dtype=np.float32)])))
            self._rewards.extend(np.concatenate([ep.rewards, np.zeros(1, dtype=np.float32)]))
            self._lengths.append(ep.length)
        if episodes:
            self._windows = None

    def _window_table(self) -> tuple[torch.Tensor, ...]:
        """(first window number, image offset, step offset) of each episode with >= 1 window, and the total."""
        if self._windows is None:
            L = self.length
            usable = [i for i, T in enumerate(self._lengths) if T + 1 >= L]  # L observations fit
            if not usable:
                longest = max(self._lengths, default=None)
                raise DataError(
                    "no episode is long enough for chunks of length " f"L = {L}: " +
                    ("the dataset has no episodes; collect some first" if longest is None else
                     f"the longest of {len(self._lengths)} episodes has T = {longest} transitions, "
                     f"T + 1 = {longest + 1} observations (a chunk needs T + 1 >= L); use a shorter "
                     f"chunk length or longer episodes"))
            counts = torch.tensor([self._lengths[i] - L + 2 for i in usable], dtype=torch.int64)
            first = torch.cumsum(counts, 0) - counts  # [E] number of each episode's first window
            image_start = torch.tensor([self._image_start[i] for i in usable], dtype=torch.int64)
            step_start = torch.tensor([self._step_start[i] for i in usable], dtype=torch.int64)
            self._windows = (first, image_start, step_start, counts.sum())
        return self._windows

    @property
    def num_windows(self) -> int:
        """How many distinct chunks of length L the episodes hold."""
        return int(self._window_table()[3])

    # -- sampling ----------------------------------------------------------------------------------

    def sample(self) -> Batch:
        """A batch of B chunks, each a uniformly random valid window (with replacement)."""
        B, L = self.batch_size, self.length
        first, image_start, step_start, total = self._window_table()
        window = torch.randint(int(total), (B,), generator=self.generator)  # [B]
        episode = torch.searchsorted(first, window, right=True) - 1  # [B] index into the usable episodes
        t = window - first[episode]  # [B] start time within the episode
        steps = torch.arange(L)
        image_rows = ((image_start[episode] + t)[:, None] + steps).reshape(-1)  # [B*L]
        step_rows = ((step_start[episode] + t)[:, None] + steps).reshape(-1)  # [B*L]
        pixels = self._images.data.index_select(0, image_rows).to(self.device)  # [B*L, 3, H, W] uint8
        dev = lambda x, *shape: x.index_select(0, step_rows).view(B, L, *shape).to(self.device)  # noqa: E731
        return Batch(images=self._to_float(pixels).view(B, L, *pixels.shape[1:]),  # [B, L, 3, H, W]
                     actions=dev(self._actions.data, -1),  # [B, L, A]
                     rewards=dev(self._rewards.data),  # [B, L]
                     states=self._states.data.index_select(0, image_rows).view(B, L, -1).to(self.device))  # [B, L, S]

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float32 in [-0.5, 0.5] (see module docstring), on x's device."""
        if self.quantize_bits is None:
            return x.to(torch.float32).div_(255.0).sub_(0.5)
        b = self.quantize_bits
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        out.uniform_(0.0, 1.0, generator=self.noise_generator)  # dequantisation noise, in units of one level
        out.add_(torch.bitwise_right_shift(x, 8 - b))  # + floor(x / 2^(8-b))
        return out.div_(2.0 ** b).sub_(0.5)

    # -- resuming ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The RNG states (uint8 tensors; loads with torch.load(weights_only=True))."""
        return {"generator": self.generator.get_state(), "noise_generator": self.noise_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore `state_dict()` so the following batches repeat bit for bit; False when the
        noise generator's state came from another device type and was reseeded from it."""
        missing = {"generator", "noise_generator"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks keys {sorted(missing)}; got keys {sorted(state)}")
        self.generator.set_state(state["generator"].cpu())  # always a CPU generator
        return restore_generator(self.noise_generator, state["noise_generator"])

    def __repr__(self) -> str:
        return (f"ChunkSampler(episodes={len(self._lengths)}, batch_size={self.batch_size}, "
                f"length={self.length}, quantize_bits={self.quantize_bits})")
