"""Tests for worldmodel.data: episode files, dataset folders and the chunk sampler.

Synthetic episodes encode (episode id, time) into every array, so a sampled chunk tells exactly
where it came from: rewards[t] = actions[t, 0] = states[t, 0] = 1000 * id + t, and every pixel of
image t equals (37 * id + t) % 256.
"""
from __future__ import annotations

import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest
import torch
from scipy import stats

from worldmodel.data import Batch, ChunkSampler, DataError, Episode, EpisodeDataset, load_episode, save_episode

SIZE = 8  # image side; small so the tests are fast


def make_episode(T: int, eid: int = 0, size: int = SIZE, action_dim: int = 2, state_dim: int = 3,
                 **meta) -> Episode:
    code = 1000.0 * eid + np.arange(T + 1, dtype=np.float32)  # [T+1]
    images = np.broadcast_to(((37 * eid + np.arange(T + 1)) % 256).astype(np.uint8)[:, None, None, None],
                             (T + 1, size, size, 3)).copy()
    actions = np.zeros((T, action_dim), np.float32)
    actions[:, 0] = code[:T]
    states = np.zeros((T + 1, state_dim), np.float32)
    states[:, 0] = code
    return Episode(images=images, actions=actions, rewards=code[:T].copy(), states=states,
                   meta={"task": "toy", "seed": eid, **meta})


def new_dataset(path, **overrides) -> EpisodeDataset:
    settings = dict(task="toy", image_size=SIZE, action_repeat=2, action_dim=2, state_dim=3) | overrides
    return EpisodeDataset.create(path, **settings)


# -- episodes ---------------------------------------------------------------------------------------

def test_save_load_round_trip_is_exact(tmp_path):
    ep = make_episode(7, eid=3, policy="random", nested={"a": [1, 2.5]})
    path = save_episode(tmp_path / "e.npz", ep)
    back = load_episode(path, expect_image_size=SIZE, expect_action_dim=2)
    for name in ("images", "actions", "rewards", "states"):
        a, b = getattr(ep, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert back.meta == ep.meta and back.length == 7
    assert not back.images.flags.writeable  # cached episodes cannot be changed behind a dataset's back
    # a plain, valid npz holding the arrays and meta as a JSON string; no temp file left beside it
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"images", "actions", "rewards", "states", "meta"}
        assert json.loads(str(z["meta"]))["policy"] == "random"
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]


@pytest.mark.parametrize("field,bad,words", [
    ("images", np.zeros((8, SIZE, SIZE, 3), np.uint8), ["images", "(8, 8, 8, 3)", "T+1"]),
    ("images", np.zeros((6, SIZE, SIZE, 3), np.float32), ["images", "uint8", "float32"]),
    ("rewards", np.zeros((5,), np.float64), ["rewards", "float64"]),
    ("states", np.zeros((5, 3), np.float32), ["states", "(5, 3)", "(6, *)"]),
    ("actions", np.full((5, 2), np.nan, np.float32), ["actions", "non-finite"]),
])
def test_episode_rejects_bad_arrays_naming_field_and_shape(field, bad, words):
    ep = make_episode(5)
    arrays = dict(images=ep.images, actions=ep.actions, rewards=ep.rewards, states=ep.states)
    arrays[field] = bad
    with pytest.raises(ValueError) as err:
        Episode(**arrays, meta={})
    for w in words:
        assert w in str(err.value)


def test_episode_rejects_meta_that_is_not_json():
    ep = make_episode(2)
    with pytest.raises(ValueError, match="JSON"):
        Episode(ep.images, ep.actions, ep.rewards, ep.states, meta={"x": object()})


def test_truncated_and_foreign_files_raise_dataerror_naming_the_file(tmp_path):
    path = save_episode(tmp_path / "e.npz", make_episode(20))
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(DataError, match=f"cut{cut}.npz"):
            load_episode(bad)
    with pytest.raises(DataError, match=r"e\.npz: images are 8x8, expected 16x16"):
        load_episode(path, expect_image_size=16)
    with pytest.raises(DataError, match="actions have dimension 2, expected 1"):
        load_episode(path, expect_action_dim=1)
    other = tmp_path / "other.npz"
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((3, 4, 4, 3), np.uint8))
    other.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"other\.npz: missing arrays"):
        load_episode(other)
    inconsistent = tmp_path / "inc.npz"
    ep = make_episode(5)
    np.savez(inconsistent, images=ep.images, actions=ep.actions, rewards=ep.rewards[:4], states=ep.states,
             meta=np.array("{}"))
    with pytest.raises(DataError, match=r"inc\.npz: Episode\.rewards has shape \(4,\)"):
        load_episode(inconsistent)


# -- dataset folders --------------------------------------------------------------------------------

def test_missing_dataset_says_how_to_create_one(tmp_path):
    with pytest.raises(DataError, match="worldmodel collect"):
        EpisodeDataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="manifest.json"):
        EpisodeDataset(tmp_path)


def test_append_writes_new_numbered_files_and_never_rewrites_old_ones(tmp_path):
    ds = new_dataset(tmp_path / "d")
    first = [ds.append(make_episode(4 + i, eid=i)) for i in range(3)]
    assert [p.name for p in first] == [f"episode_00000{i}.npz" for i in range(3)]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in first}
    later = [ds.append(make_episode(9, eid=10 + i)) for i in range(2)]
    assert [p.name for p in later] == ["episode_000003.npz", "episode_000004.npz"]
    for p, (content, mtime) in before.items():
        assert p.read_bytes() == content and p.stat().st_mtime_ns == mtime
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["episodes"] == 5 and manifest["steps"] == 4 + 5 + 6 + 9 + 9
    assert manifest["task"] == "toy" and manifest["image_size"] == SIZE and manifest["version"] == 1
    reopened = EpisodeDataset(tmp_path / "d")
    assert len(reopened) == 5 and reopened.num_steps == 33
    assert reopened.episode_paths == first + later
    assert np.array_equal(reopened[3].rewards, make_episode(9, eid=10).rewards)
    assert reopened[-1].meta["seed"] == 11


def test_append_rejects_episodes_that_do_not_match_the_manifest(tmp_path):
    ds = new_dataset(tmp_path)
    with pytest.raises(DataError, match="image_size = \\(16, 16\\).*image_size = \\(8, 8\\)"):
        ds.append(make_episode(3, size=16))
    with pytest.raises(DataError, match="action_dim = 1"):
        ds.append(make_episode(3, action_dim=1))
    with pytest.raises(DataError, match="task = 'other'"):
        ds.append(make_episode(3, task="other"))
    assert len(ds) == 0 and list(tmp_path.glob("episode_*")) == []


def test_create_on_existing_folder_checks_settings(tmp_path):
    ds = new_dataset(tmp_path)
    ds.append(make_episode(3))
    again = new_dataset(tmp_path)  # same settings: opens the existing dataset
    assert len(again) == 1
    assert len(new_dataset(tmp_path, image_size=(SIZE, SIZE))) == 1  # (8, 8) is the same size as 8
    with pytest.raises(DataError) as err:
        new_dataset(tmp_path, task="cartpole-swingup")
    assert "task" in str(err.value) and "'toy'" in str(err.value) and "'cartpole-swingup'" in str(err.value)
    with pytest.raises(DataError, match="action_repeat = 2.*action_repeat = 8"):
        new_dataset(tmp_path, action_repeat=8)


def test_bad_files_raise_naming_them_or_are_skipped_with_a_warning(tmp_path):
    ds = new_dataset(tmp_path)
    paths = [ds.append(make_episode(6, eid=i)) for i in range(4)]
    paths[1].write_bytes(paths[1].read_bytes()[:200])  # truncated
    save_episode(paths[2], make_episode(6, size=16))  # wrong image size
    with pytest.raises(DataError, match="episode_000001.npz"):
        EpisodeDataset(tmp_path)
    paths[1].write_bytes(paths[0].read_bytes())  # repair the first problem: now the size one shows
    with pytest.raises(DataError, match="episode_000002.npz: images are 16x16, expected 8x8"):
        EpisodeDataset(tmp_path)
    paths[1].write_bytes(b"not a zip file at all")
    with pytest.warns(UserWarning) as record:
        ok = EpisodeDataset(tmp_path, skip_bad=True)
    text = " ".join(str(w.message) for w in record)
    assert "episode_000001.npz" in text and "episode_000002.npz" in text
    assert len(ok) == 2 and ok.episode_paths == [paths[0], paths[3]]
    assert ok.bad_paths == [paths[1], paths[2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok.refresh()  # known bad files are not reported again


def test_files_win_when_the_manifest_is_stale(tmp_path):
    ds = new_dataset(tmp_path)
    ds.append(make_episode(5, eid=0))
    save_episode(tmp_path / "episode_000001.npz", make_episode(7, eid=1))  # crash before the manifest write
    with pytest.warns(UserWarning, match="records 1 episodes"):
        reopened = EpisodeDataset(tmp_path)
    assert len(reopened) == 2 and reopened.num_steps == 12 and reopened.manifest["episodes"] == 2
    path = reopened.append(make_episode(3, eid=2))
    assert path.name == "episode_000002.npz"
    assert json.loads((tmp_path / "manifest.json").read_text())["steps"] == 15


def test_refresh_sees_episodes_appended_by_another_object(tmp_path):
    writer = new_dataset(tmp_path)
    writer.append(make_episode(10, eid=0))
    reader = EpisodeDataset(tmp_path)
    sampler = ChunkSampler(reader, batch_size=4, length=8, seed=0)
    assert sampler.num_windows == 4  # T - L + 2: windows end at o_7 .. o_10
    writer.append(make_episode(20, eid=1))
    assert len(reader) == 1
    assert sampler.refresh() == 1
    assert len(reader) == 2 and sampler.num_windows == 4 + 14
    assert reader.refresh() == 0


# -- the sampler ------------------------------------------------------------------------------------

LENGTHS = [5, 12, 30, 2, 20]  # with L = 4: 3, 10, 28, 0 and 18 windows (T - L + 2; 3 observations < L)


def toy_sampler(L=4, B=64, seed=0, **kw) -> ChunkSampler:
    return ChunkSampler([make_episode(T, eid=i) for i, T in enumerate(LENGTHS)], B, L, seed=seed, **kw)


def test_batch_shapes_dtypes_and_alignment():
    b = toy_sampler(L=4, B=6).sample()
    assert isinstance(b, Batch) and b.batch_size == 6 and b.length == 4
    assert b.images.shape == (6, 4, 3, SIZE, SIZE) and b.images.dtype == torch.float32
    assert b.actions.shape == (6, 4, 2) and b.actions.dtype == torch.float32
    assert b.rewards.shape == (6, 4) and b.rewards.dtype == torch.float32
    assert b.states.shape == (6, 4, 3) and b.states.dtype == torch.float32
    # o_t and s_t carry the same (episode, t) code, and so do a_t and r_t wherever the model reads them
    code = b.states[..., 0]  # [B, L]
    assert torch.equal(b.actions[:, :-1, 0], code[:, :-1]) and torch.equal(b.rewards[:, :-1], code[:, :-1])
    eid, t = torch.div(code, 1000, rounding_mode="floor"), torch.remainder(code, 1000)
    pixel = torch.remainder(37 * eid + t, 256) / 255 - 0.5  # [B, L]
    assert torch.equal(b.images, pixel[:, :, None, None, None].expand_as(b.images))


def test_windows_never_cross_episode_boundaries():
    sampler = toy_sampler(L=4, B=256)
    for _ in range(20):
        code = sampler.sample().states[..., 0]  # [B, L]
        eid, t = code // 1000, code % 1000
        assert torch.all(eid == eid[:, :1]), "a chunk mixes episodes"
        assert torch.all(t == t[:, :1] + torch.arange(4)), "a chunk is not consecutive"
        lengths = torch.tensor(LENGTHS, dtype=code.dtype)[eid[:, 0].long()]
        assert torch.all(t[:, -1] <= lengths), "a chunk runs past its episode's last observation"
        assert not torch.any(eid == 3), "an episode with fewer than L observations was sampled"


def test_the_final_transition_is_trained_and_the_unread_slot_is_zero():
    """Every observation o_0..o_T of every long-enough episode, o_T included, lands in some chunk,
    so the final transition o_{T-1} -> o_T is trained; where a chunk ends at o_T, its last action
    and reward (which lead outside the episode and which the model never reads) are zeros."""
    sampler = toy_sampler(L=4, B=512, seed=3)
    seen, ends = set(), 0
    for _ in range(10):
        b = sampler.sample()
        code = b.states[..., 0]  # [B, L]
        seen |= {int(c) for c in code.flatten()}
        eid, t = (code[:, -1] // 1000).long(), code[:, -1] % 1000
        at_end = t == torch.tensor(LENGTHS, dtype=code.dtype)[eid]  # [B] the chunk ends at o_T
        ends += int(at_end.sum())
        assert torch.all(b.rewards[at_end, -1] == 0) and torch.all(b.actions[at_end, -1] == 0)
        assert torch.equal(b.rewards[~at_end, -1], code[~at_end, -1])
    assert seen == {1000 * e + t for e, T in enumerate(LENGTHS) if T + 1 >= 4 for t in range(T + 1)}
    assert ends > 0


def test_windows_are_uniform_over_all_valid_windows():
    sampler = toy_sampler(L=4, B=1000, seed=123)
    codes = torch.cat([sampler.sample().states[:, 0, 0] for _ in range(30)])  # 30000 window starts
    valid = [1000 * e + t for e, T in enumerate(LENGTHS) for t in range(T - 4 + 2)]
    assert sampler.num_windows == len(valid) == 59
    number = {code: i for i, code in enumerate(valid)}
    counts = torch.bincount(torch.tensor([number[int(c)] for c in codes]), minlength=59).numpy()
    assert counts.sum() == 30000 and counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3
    # so episodes are weighted by window count (not uniform over episodes): 28/59 for episode 2
    share_episode_2 = float((codes // 1000 == 2).float().mean())
    assert abs(share_episode_2 - 28 / 59) < 0.015


def test_same_seed_same_batches_other_seed_differs_and_state_resumes(tmp_path):
    for bits in (None, 5):
        a, b, c = toy_sampler(seed=7, quantize_bits=bits), toy_sampler(seed=7, quantize_bits=bits), \
            toy_sampler(seed=8, quantize_bits=bits)
        for _ in range(3):
            x, y, z = a.sample(), b.sample(), c.sample()
            assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("images", "actions", "rewards", "states"))
            assert not torch.equal(x.rewards, z.rewards)
        if bits is not None:  # the dequantisation noise follows the seed too, not only the windows
            one = [make_episode(4)]
            n7, n8 = (ChunkSampler(one, 2, 4, seed=s, quantize_bits=bits).sample().images for s in (7, 8))
            assert not torch.equal(n7, n8)
        torch.save(a.state_dict(), tmp_path / "s.pt")
        expected = [a.sample() for _ in range(2)]
        resumed = toy_sampler(seed=999, quantize_bits=bits)
        resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
        for e in expected:
            got = resumed.sample()
            assert torch.equal(got.images, e.images) and torch.equal(got.rewards, e.rewards)


def test_plain_pixels_map_to_x_over_255_minus_half():
    ep = make_episode(255, eid=0)  # pixel values 0..255 over time
    b = ChunkSampler([ep], batch_size=2, length=256, seed=0).sample()  # the one window: all 256 frames
    x = torch.arange(256, dtype=torch.float32)
    assert torch.equal(b.images[0, :, 0, 0, 0], x / 255 - 0.5)
    assert b.images.min() == -0.5 and b.images.max() == 0.5


@pytest.mark.parametrize("bits", [5, 3, 8])
def test_quantized_pixels_have_2_to_the_bits_levels_plus_uniform_noise(bits):
    ep = make_episode(255, eid=0)
    b = ChunkSampler([ep], batch_size=4, length=256, seed=1, quantize_bits=bits).sample()
    v = b.images  # [4, 256, 3, 8, 8]; frame t holds pixel value t
    assert v.min() >= -0.5 and v.max() <= 0.5
    scaled = (v + 0.5) * 2 ** bits  # level + noise in units of one level
    x = torch.arange(256)[None, :, None, None, None]
    level = (x // 2 ** (8 - bits)).float()  # floor(x / 2^(8-b))
    noise = scaled - level
    # noise in [0, 1) up to float32 rounding (level + u can round up to level + 1 when u ~ 1)
    assert noise.min() >= 0 and noise.max() <= 1 + 1e-4
    assert torch.floor(scaled.clamp(max=2 ** bits - 1e-3)).unique().numel() == 2 ** bits
    # U(0, 1): mean 1/2, variance 1/12, and fresh per pixel (pixels of one frame share x but not noise)
    assert abs(float(noise.mean()) - 0.5) < 0.01 and abs(float(noise.var()) - 1 / 12) < 0.005
    assert abs(float(noise.flatten(2).std(-1).mean()) - (1 / 12) ** 0.5) < 0.01


def test_error_when_every_episode_is_shorter_than_L():
    with pytest.raises(DataError) as err:
        toy_sampler(L=32)
    assert "L = 32" in str(err.value) and "T = 30" in str(err.value)
    assert toy_sampler(L=31).num_windows == 1  # the longest episode's 31 observations: one window
    with pytest.raises(DataError, match="no episodes"):
        ChunkSampler([], 2, 3)


def test_sampler_rejects_bad_settings():
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        toy_sampler(B=0)
    with pytest.raises(ValueError, match="quantize_bits must be in 1..8.*got 9"):
        toy_sampler(quantize_bits=9)
    with pytest.raises(DataError, match="one sampler needs one kind of episode"):
        ChunkSampler([make_episode(5), make_episode(5, size=16)], 2, 3)
