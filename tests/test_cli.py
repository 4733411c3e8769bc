"""The `worldmodel` command reports bad input in one line and exit status 2, not a traceback."""
from __future__ import annotations

import sys

import pytest

from worldmodel.cli import console_main
from worldmodel.demo import DemoConfig


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--run", "{tmp}/nowhere"], "holds no training run"),
    (["evaluate", "--run", "{tmp}/nowhere", "--planning-precision", "float16"], "precision must be one of"),
    (["visualize", "--run", "{tmp}/nowhere"], "holds no training run"),
    (["e2c", "--out", "{tmp}/e2c", "--set", "bogus=1"], "unknown E2CConfig keys ['bogus']"),
    (["e2c", "--out", "{tmp}/e2c", "--set", "planner=lbfgs"], "lbfgs"),
    (["e2c", "--task", "point_mass-easy", "--out", "{tmp}/e2c"], "has none"),
    (["collect", "--task", "cartpole-run", "--episodes", "1", "--out", "{tmp}/d"], "known tasks"),
    (["collect", "--task", "cartpole-balance", "--episodes", "1", "--out", "{tmp}/d", "--camera", "side"],
     "a name in ['fixed', 'lookatcart']"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["worldmodel", *(a.format(tmp=tmp_path) for a in argv)])
    monkeypatch.delenv("WORLDMODEL_TRACEBACK", raising=False)
    assert console_main() == 2
    err = capsys.readouterr().err
    assert err.startswith("worldmodel: error: ") and message in err and "Traceback" not in err


def test_collect_camera_flag_takes_an_id_or_a_name(tmp_path):
    """`--camera 1` and `--camera lookatcart` name the same camera, and the dataset says which."""
    import json

    from worldmodel.cli import main

    for camera, recorded in (("1", 1), ("lookatcart", "lookatcart"), ("-1", -1)):
        out = tmp_path / camera
        main(["collect", "--task", "cartpole-balance", "--episodes", "1", "--out", str(out), "--image-size", "8",
              "--action-repeat", "50", "--camera", camera])
        assert json.loads((out / "manifest.json").read_text())["camera"] == recorded
    with pytest.raises(ValueError, match="not a camera of cartpole-balance"):
        main(["collect", "--task", "cartpole-balance", "--episodes", "1", "--out", str(tmp_path / "side"),
              "--camera", "side"])
    assert not (tmp_path / "side").exists()  # refused before the folder is made


def test_traceback_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["worldmodel", "evaluate", "--run", str(tmp_path / "nowhere")])
    monkeypatch.setenv("WORLDMODEL_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError, match="holds no training run"):
        console_main()


@pytest.mark.parametrize("argv, expected", [
    ([], {"train_episodes": DemoConfig.train_episodes, "episode_steps": DemoConfig.episode_steps}),
    (["--episode-steps", "0", "--train-episodes", "20"], {"train_episodes": 20, "episode_steps": None}),
    (["--quick", "--episode-steps", "16"],
     {"train_episodes": DemoConfig.quick().train_episodes, "episode_steps": 16}),
])
def test_demo_flags_reach_its_config(argv, expected, monkeypatch):
    """`demo --episode-steps 0` asks for the task's full episodes (None in DemoConfig)."""
    from worldmodel import demo
    from worldmodel.cli import main

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda config, out: seen.setdefault("config", config))
    monkeypatch.setattr(demo, "print_table", lambda summary: None)
    main(["demo", "--out", "unused", *argv])
    assert {k: getattr(seen["config"], k) for k in expected} == expected


def test_python_dash_m_is_the_same_command(tmp_path):
    """`python -m worldmodel` (a checkout on PYTHONPATH, no console script) reports bad input
    the same way as the installed `worldmodel`."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "worldmodel", "evaluate", "--run", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("worldmodel: error: ") and "holds no training run" in done.stderr


def test_visualize_draws_a_trained_run_and_prints_r2_by_target(tmp_path, capsys):
    """collect -> train -> visualize through the CLI, at toy sizes: the pictures are written and
    the R² is printed as a mean and target by target."""
    import imageio.v3 as iio

    from worldmodel.cli import main
    from worldmodel.geometry import target_names

    data, run, held = tmp_path / "data", tmp_path / "run", tmp_path / "held"
    for folder, episodes, seed in ((data, 2, 0), (held, 2, 1)):
        main(["collect", "--task", "cartpole-balance", "--episodes", str(episodes), "--out", str(folder),
              "--image-size", "32", "--action-repeat", "50", "--seed", str(seed)])
    main(["train", "--data", str(data), "--out", str(run), "--preset", "small", "--steps", "3",
          "--batch-size", "2", "--chunk-length", "8", "--device", "cpu", "--no-progress"])
    capsys.readouterr()
    main(["visualize", "--run", str(run), "--heldout", str(held), "--out", str(tmp_path / "pictures")])
    printed = capsys.readouterr().out
    assert "latent R² on held-out episodes: linear" in printed
    by_target = next(line for line in printed.splitlines() if "by target" in line)
    assert all(name in by_target for name in target_names("cartpole-balance")), by_target
    image = iio.imread(tmp_path / "pictures" / "latent_geometry.png")
    assert image.ndim == 3 and image.shape[0] > 100
