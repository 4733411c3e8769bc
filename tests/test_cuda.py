"""The same code on a GPU: training, resume, checkpoints moving between devices and planning.

Skipped where torch sees no GPU (CI has none); run on a CUDA machine with
`python -m pytest tests/test_cuda.py`. Each test compares the GPU against the CPU on the same
seeded work, so a device mix-up (a tensor left on the CPU, a generator on the wrong device)
fails here rather than in a user's long run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

sys.path.insert(0, str(Path(__file__).parent))
from test_planners_ilqr import lq_matrices, lq_problem, riccati  # noqa: E402
from train_fixtures import make_dataset, tiny_model_config, tiny_train_config  # noqa: E402

import planners  # noqa: E402
from worldmodel.checkpoint import load_checkpoint  # noqa: E402
from worldmodel.device import resolve_device  # noqa: E402
from worldmodel.metrics_log import read_metrics  # noqa: E402
from worldmodel.train import train  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "square")


def test_auto_is_the_gpu():
    assert resolve_device("auto").type == "cuda"


def test_training_on_the_gpu_follows_the_cpu_and_resumes_on_either(data, tmp_path):
    """Same seed, same batches: the GPU's losses track the CPU's (TF32 convolutions and other
    kernels differ in the last bits, so not exactly); a GPU run resumes bit for bit on the GPU
    and its checkpoint continues on the CPU (reseeded random streams, with a warning)."""
    steps = 8
    train(tiny_model_config(), tiny_train_config(steps=steps, device="cpu"), data, tmp_path / "cpu",
          progress=False)
    train(tiny_model_config(), tiny_train_config(steps=steps, device="cuda"), data, tmp_path / "gpu",
          progress=False)
    cpu, gpu = read_metrics(tmp_path / "cpu"), read_metrics(tmp_path / "gpu")
    for a, b in zip(cpu, gpu):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2), (a["step"], a["loss"], b["loss"])
    state = load_checkpoint(tmp_path / "gpu" / "checkpoint.pt")  # map_location cpu by default
    assert all(t.device.type == "cpu" for t in state["model"].values())

    half = tiny_train_config(steps=steps // 2, device="cuda")
    train(tiny_model_config(), half, data, tmp_path / "split", progress=False)
    train(None, tiny_train_config(steps=steps, device="cuda"), None, tmp_path / "split", resume=True,
          progress=False)
    split = read_metrics(tmp_path / "split")
    assert [r["loss"] for r in split] == [r["loss"] for r in gpu]

    with pytest.warns(UserWarning, match="another kind of device"):  # GPU RNG states do not fit
        train(None, tiny_train_config(steps=steps + 2, device="cpu"), None, tmp_path / "gpu",
              resume=True, progress=False)
    moved = read_metrics(tmp_path / "gpu")
    assert [r["step"] for r in moved] == list(range(1, steps + 3))
    assert all(np.isfinite(r["loss"]) for r in moved)


def test_ilqr_on_the_gpu_equals_riccati_in_float64():
    A, B, Q, R, Qf = lq_matrices(1, unstable=True)
    x0 = np.array([1.0, -2.0, 0.5, 1.5])
    u_star, j_star = riccati(A, B, Q, R, Qf, x0, 10)
    problem = lq_problem(A, B, Q, R, Qf, 10, device="cuda")
    res = planners.make("ilqr", iterations=1).plan(problem, torch.tensor(x0, device="cuda"))
    assert res.actions.device.type == "cuda" and res.actions.dtype == torch.float64
    np.testing.assert_allclose(res.actions.cpu().numpy(), u_star, rtol=1e-8, atol=1e-10)
    assert res.cost == pytest.approx(j_star, rel=1e-8)


@pytest.mark.parametrize("name", ["cem", "mppi", "random", "icem"])
def test_sampling_planners_plan_a_learned_model_on_the_gpu(name):
    """A planet-sized model's reward problem on the GPU: actions stay on it and in the bounds,
    a seeded CUDA generator repeats, and the plan beats doing nothing."""
    from worldmodel import ModelConfig, WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig.planet(obs_shape=(3, 64, 64), action_dim=1)).cuda().eval()
    with torch.inference_mode():
        start = model.to_vector(model.filter_step(None, None, torch.zeros(1, 3, 64, 64, device="cuda")))[0]
    problem = model.planning_problem(None, "reward", 12)
    # iCEM: coloured noise, whose spectrum once stayed on the CPU
    planner = planners.CEM.icem() if name == "icem" else planners.make(name)
    with torch.inference_mode():
        res = planner.plan(problem, start, generator=torch.Generator("cuda").manual_seed(0))
        again = planner.plan(problem, start, generator=torch.Generator("cuda").manual_seed(0))
        idle = planners.rollout.total_cost(problem, start, torch.zeros(1, 12, 1, device="cuda"))
    assert res.actions.device.type == "cuda" and res.actions.shape == (12, 1)
    assert bool((res.actions.abs() <= 1).all())
    assert torch.equal(res.actions, again.actions)
    assert res.cost <= float(idle[0]) + 1e-4
