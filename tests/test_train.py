"""Tests of worldmodel.train: learning happens, resume is bit-exact, divergence and Ctrl-C leave a
usable checkpoint, and bad resumes fail with errors that name the problem."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import one_thread, make_dataset, tiny_model_config, tiny_train_config  # noqa: E402,F401 (one_thread: autouse)

from worldmodel.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from worldmodel.metrics_log import read_metrics  # noqa: E402
from worldmodel.online_config import OnlineConfig  # noqa: E402
from worldmodel.train import NonFiniteLossError, TrainConfig, Trainer, train  # noqa: E402

LOSS_TERMS = ("loss", "elbo", "recon_nll", "reward_nll", "kl", "grad_norm")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "square")


def _losses(run: Path) -> list[dict[str, float]]:
    return [{k: r[k] for k in ("step", *LOSS_TERMS)} for r in read_metrics(run)]


def test_run_folder_contents_and_learning(data, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_model_config(), tiny_train_config(steps=40, lr=3e-3, checkpoint_every=20),
                   data, run, progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["transition"] == "rssm" and config["train"]["steps"] == 40
    assert Path(config["data"]) == data.resolve() and config["data_manifest"]["image_size"] == 32
    assert {"created", "versions"} <= set(config) and config["versions"]["torch"] == torch.__version__
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(1, 41))
    for r in records:
        assert set(LOSS_TERMS) | {"frames_per_s", "wall_time", "kl_init", "kl_dyn"} <= set(r)
        assert r["frames_per_s"] > 0
    assert result == records[-1]
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 40
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < first - 10, f"loss did not fall: {first:.1f} -> {last:.1f}"


def test_log_every_averages_the_window(data, tmp_path):
    train(tiny_model_config(), tiny_train_config(steps=6, log_every=1), data, tmp_path / "a", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=6, log_every=3), data, tmp_path / "b", progress=False)
    every, windows = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["step"] for r in windows] == [3, 6]
    for w, lo in zip(windows, (0, 3)):
        assert w["loss"] == pytest.approx(sum(r["loss"] for r in every[lo:lo + 3]) / 3, rel=1e-12)


def test_resume_continues_bit_for_bit(data, tmp_path):
    k = 4
    config = tiny_train_config(steps=2 * k, checkpoint_every=3)
    train(tiny_model_config(), config, data, tmp_path / "straight", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=k, checkpoint_every=3), data, tmp_path / "split",
          progress=False)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == k  # saved at exit
    train(None, config, None, tmp_path / "split", resume=True, progress=False)
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert [r["step"] for r in split] == list(range(1, 2 * k + 1))
    assert split == straight  # exact float equality, every term of every step
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    resumed = json.loads((tmp_path / "split" / "config.json").read_text())["resumed"]
    assert [r["step"] for r in resumed] == [k]


def test_resume_on_a_dataset_that_grew_says_so(tmp_path):
    from train_fixtures import make_dataset

    from worldmodel.data import EpisodeDataset

    data = make_dataset(tmp_path / "data")  # 3 episodes
    train(tiny_model_config(), tiny_train_config(steps=2), data, tmp_path / "run", progress=False)
    grown = EpisodeDataset(data)
    grown.append(grown[0])  # another collect into the same folder
    with pytest.warns(UserWarning, match="holds 4 episodes, the checkpoint was trained on 3"):
        train(None, tiny_train_config(steps=3), None, tmp_path / "run", resume=True, progress=False)


def test_resume_mid_window_keeps_the_window_averages(data, tmp_path):
    config = tiny_train_config(steps=8, log_every=3)
    train(tiny_model_config(), config, data, tmp_path / "straight", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=4, log_every=3), data, tmp_path / "split",
          progress=False)
    train(None, config, None, tmp_path / "split", resume=True, progress=False)
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert [r["step"] for r in straight] == [3, 6, 8]
    assert [r["step"] for r in split] == [3, 4, 6, 8]  # 4: the partial window logged at the exit
    assert [r for r in split if r["step"] != 4] == straight  # 6 averages steps 4..6 across the resume


def test_resume_of_a_finished_run_returns_its_metrics(data, tmp_path):
    config = tiny_train_config(steps=3, log_every=2)  # records at 2 and 3 (a partial window)
    result = train(tiny_model_config(), config, data, tmp_path / "r", progress=False)
    again = train(None, None, None, tmp_path / "r", resume=True, progress=False)
    assert again == result and [r["step"] for r in read_metrics(tmp_path / "r")] == [2, 3]
    # nothing was trained, so no sitting is recorded (two such reads side by side raced on it)
    assert "resumed" not in json.loads((tmp_path / "r" / "config.json").read_text())


def test_ctrl_c_saves_then_resume_matches(data, tmp_path, monkeypatch):
    config = tiny_train_config(steps=8, checkpoint_every=100)
    train(tiny_model_config(), config, data, tmp_path / "straight", progress=False)
    original = Trainer.train_step

    def interrupted_at_step_3(self, stop_requested=False):
        if self.step == 2:  # during the third update, as a user's Ctrl-C would arrive
            signal.raise_signal(signal.SIGINT)
        return original(self, stop_requested)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_step_3)
    before = signal.getsignal(signal.SIGINT)  # default, or SIG_IGN in a shell's background job
    with pytest.raises(KeyboardInterrupt, match="checkpoint saved"):
        train(tiny_model_config(), config, data, tmp_path / "split", progress=False)
    # the update in flight finishes, the next one sees the request and is the last
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 4
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored
    monkeypatch.setattr(Trainer, "train_step", original)
    train(None, None, None, tmp_path / "split", resume=True, progress=False)
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")


def test_nan_stops_naming_step_and_term_and_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    from worldmodel import WorldModel

    train(tiny_model_config(), tiny_train_config(steps=4, checkpoint_every=2), data, tmp_path / "clean",
          progress=False)
    calls = {"n": 0}
    loss = WorldModel.loss

    def poisoned(self, batch, generator=None):
        terms = loss(self, batch, generator)
        calls["n"] += 1
        if calls["n"] == 5:
            terms["kl_dyn"] = terms["kl_dyn"] * float("nan")
        return terms

    monkeypatch.setattr(WorldModel, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 5: kl_dyn = nan"):
        train(tiny_model_config(), tiny_train_config(steps=8, checkpoint_every=2), data, tmp_path / "bad",
              progress=False)
    kept = load_checkpoint(tmp_path / "bad" / "checkpoint.pt")
    clean = load_checkpoint(tmp_path / "clean" / "checkpoint.pt")
    assert kept["step"] == 4
    assert all(torch.equal(kept["model"][n], clean["model"][n]) for n in clean["model"])


def test_overshooting_overflow_names_its_setting(data, tmp_path, monkeypatch):
    from worldmodel import WorldModel

    loss = WorldModel.loss

    def overflowed(self, batch, generator=None):
        terms = loss(self, batch, generator)
        terms["overshooting_kl"] = terms["kl_dyn"] * float("inf")
        return terms

    monkeypatch.setattr(WorldModel, "loss", overflowed)
    with pytest.raises(NonFiniteLossError, match=r"step 1: overshooting_kl = inf.*smaller overshooting_distance"):
        train(tiny_model_config(), tiny_train_config(steps=2), data, tmp_path / "run", progress=False)


def test_an_infinite_gradient_from_a_finite_loss_names_the_largest_term(data, tmp_path, monkeypatch):
    from worldmodel import WorldModel

    class InfiniteGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("inf")

    loss = WorldModel.loss

    def runaway(self, batch, generator=None):  # as measured: finite terms, one of them 1e18
        terms = loss(self, batch, generator)
        terms["overshooting_kl"] = terms["kl_dyn"].detach() * 0 + 1.1e18
        terms["loss"] = InfiniteGradient.apply(terms["loss"])
        return terms

    monkeypatch.setattr(WorldModel, "loss", runaway)
    with pytest.raises(NonFiniteLossError, match=r"step 1: grad_norm = (inf|nan) \(the largest loss term: "
                                                 r"overshooting_kl = 1\.1e\+18\).*overshooting_kl_cap"):
        train(tiny_model_config(), tiny_train_config(steps=2), data, tmp_path / "run", progress=False)


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="holds no run"):
        train(None, None, None, tmp_path / "empty", resume=True, progress=False)


def test_new_run_refuses_to_overwrite(data, tmp_path):
    train(tiny_model_config(), tiny_train_config(steps=1), data, tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="already holds a training run"):
        train(tiny_model_config(), tiny_train_config(steps=1), data, tmp_path / "r", progress=False)


def test_resume_with_conflicting_settings_names_field_and_values(data, tmp_path):
    run = tmp_path / "r"
    train(tiny_model_config(), tiny_train_config(steps=2), data, run, progress=False)
    with pytest.raises(ValueError, match=r"model setting 'transition'.*'rssm'.*'gaussian'"):
        train(tiny_model_config(transition="gaussian"), None, None, run, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"train setting 'lr'.*0\.001.*0\.01"):
        train(None, tiny_train_config(steps=4, lr=1e-2), None, run, resume=True, progress=False)
    other = make_dataset(tmp_path / "other", episodes=1)
    with pytest.raises(ValueError, match=r"run setting 'data'"):
        train(None, None, other, run, resume=True, progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2  # nothing was trained


def test_a_copied_project_resumes_on_its_own_data_and_a_lost_dataset_is_named(tmp_path):
    import shutil

    original = tmp_path / "a"
    make_dataset(original / "data", episodes=2)
    train(tiny_model_config(), tiny_train_config(steps=2), original / "data", original / "run", progress=False)
    shutil.copytree(original, tmp_path / "b")
    shutil.rmtree(original / "data")  # the copy must not need the original's data
    copy = tmp_path / "b"
    train(None, tiny_train_config(steps=4), copy / "data", copy / "run", resume=True, progress=False)
    config = json.loads((copy / "run" / "config.json").read_text())
    assert Path(config["data"]) == (copy / "data").resolve() and config["data_relative"] == "../data"
    assert load_checkpoint(copy / "run" / "checkpoint.pt")["step"] == 4
    shutil.rmtree(copy / "data")
    with pytest.raises(CheckpointError, match=r"data of the run .* is not where its config.json says"):
        train(None, None, None, copy / "run", resume=True, progress=False)


def test_data_that_does_not_fit_the_model(data, tmp_path):
    with pytest.raises(ValueError, match="action_dim 1 but the model config has action_dim 2"):
        train(tiny_model_config(action_dim=2), tiny_train_config(), data, tmp_path / "r", progress=False)


def test_bad_train_config_values():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="chunk_length must be >= 2.*L - 1 transitions"):
        TrainConfig(chunk_length=1)  # the value head's recorded target once crashed on it
    with pytest.raises(ValueError, match="chunk_length must be >= 2"):
        OnlineConfig(chunk_length=1)  # and every config that trains goes through TrainConfig
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="float16")
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(device="tpu")
    assert TrainConfig.planet() == TrainConfig()
    assert (TrainConfig().lr, TrainConfig().adam_eps, TrainConfig().grad_clip) == (1e-3, 1e-4, 1000.0)


def test_bfloat16_autocast_trains_close_to_float32(data, tmp_path):
    f32 = train(tiny_model_config(), tiny_train_config(steps=1), data, tmp_path / "f", progress=False)
    bf16 = train(tiny_model_config(), tiny_train_config(steps=1, precision="bfloat16"), data, tmp_path / "b",
                 progress=False)
    assert bf16["loss"] != f32["loss"]  # autocast really ran in bf16 ...
    assert bf16["loss"] == pytest.approx(f32["loss"], rel=2e-2)  # ... on the same batch and noise


@pytest.mark.slow
def test_compiled_networks_train_like_eager_and_resume_from_an_older_config(data, tmp_path):
    """compile_networks changes how the convs' neighbours run, not the maths or the checkpoint;
    a run whose config.json predates a setting resumes with that setting's default."""
    eager = train(tiny_model_config(), tiny_train_config(steps=2), data, tmp_path / "e", progress=False)
    fast = train(tiny_model_config(), tiny_train_config(steps=2, compile_networks=True), data,
                 tmp_path / "c", progress=False)
    for term in LOSS_TERMS:
        assert fast[term] == pytest.approx(eager[term], rel=1e-4, abs=1e-4), term
    a = load_checkpoint(tmp_path / "e" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "c" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    config_path = tmp_path / "e" / "config.json"
    stored = json.loads(config_path.read_text())
    del stored["train"]["compile_networks"]  # as written before the setting existed
    config_path.write_text(json.dumps(stored))
    train(None, tiny_train_config(steps=3), None, tmp_path / "e", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "e" / "checkpoint.pt")["step"] == 3


def test_cli_trains_then_resumes(data, tmp_path):
    from worldmodel.train_cli import add_train_arguments, run_train_command

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    run = tmp_path / "cli"
    flags = ["--preset", "small", "--batch-size", "2", "--chunk-length", "4", "--device", "cpu",
             "--checkpoint-every", "2", "--no-progress", "--snapshots", "--obs-std", "0.2"]
    # the small preset's model at 32x32 is still quick: 3 updates, then 2 more on --resume
    assert run_train_command(parser.parse_args(["--data", str(data), "--out", str(run), "--steps", "3",
                                                *flags])) == 0
    assert run_train_command(parser.parse_args(["--out", str(run), "--resume", "--steps", "5",
                                                "--no-progress"])) == 0
    assert [r["step"] for r in read_metrics(run)][-1] == 5
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["deter_size"] == 128 and config["train"]["batch_size"] == 2
    assert config["model"]["obs_std"] == 0.2 and config["train"]["snapshots"] is True
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "step_00000002.pt", "step_00000003.pt", "step_00000004.pt", "step_00000005.pt"]
    with pytest.raises(ValueError, match=r"model setting 'transition'"):
        run_train_command(parser.parse_args(["--out", str(run), "--resume", "--transition", "gaussian"]))


def test_a_run_whose_config_predates_a_model_setting_resumes_with_its_model_given(data, tmp_path):
    """`worldmodel train --resume --transition ...` hands `train` a model config with today's fields;
    a run whose config.json was written before a field existed takes that field's default."""
    run = tmp_path / "old"
    train(tiny_model_config(), tiny_train_config(steps=2), data, run, progress=False)
    config_path = run / "config.json"
    stored = json.loads(config_path.read_text())
    for key in ("value_head", "overshooting_reward_scale"):  # as written before they existed
        del stored["model"][key]
    config_path.write_text(json.dumps(stored))
    train(tiny_model_config(), tiny_train_config(steps=3), None, run, resume=True, progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    with pytest.raises(ValueError, match="value_head"):  # a real change is still refused
        train(tiny_model_config(value_head=True), tiny_train_config(steps=4), None, run, resume=True,
              progress=False)
