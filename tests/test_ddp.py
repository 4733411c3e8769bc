"""Data-parallel training under torchrun (gloo, CPU): both processes end with identical parameters,
and those equal one process applying the same Adam updates to the gradient of the mean loss over
both ranks' chunks (the concatenated batch), each half with its rank's sampling noise."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import make_dataset, tiny_model_config, tiny_train_config  # noqa: E402

from worldmodel.checkpoint import load_checkpoint  # noqa: E402
from worldmodel.data import Batch  # noqa: E402
from worldmodel.distributed import rank_seeds  # noqa: E402
from worldmodel.metrics_log import read_metrics  # noqa: E402

STEPS = 3
REPO = Path(__file__).resolve().parents[1]


def _replay_in_one_process(dumps: list[dict]) -> dict[str, torch.Tensor]:
    """Adam on mean_r loss(batch_r, noise_r): what DDP over the ranks should compute."""
    from worldmodel import WorldModel

    config = tiny_train_config(steps=STEPS)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = WorldModel(tiny_model_config())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    noise = [torch.Generator().manual_seed(rank_seeds(config.seed, r)[0]) for r in range(len(dumps))]
    for step in range(STEPS):
        optimizer.zero_grad()
        losses = [model.loss(Batch(**d["batches"][step]), generator=g)["loss"] for d, g in zip(dumps, noise)]
        (sum(losses) / len(losses)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
    return model.state_dict()


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_on_the_joint_batch(tmp_path):
    data = make_dataset(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "ddp_script.py"), str(data), str(tmp_path / "run"), str(tmp_path), str(STEPS)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dumps = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    # each rank drew its own chunks
    assert not torch.equal(dumps[0]["batches"][0]["images"], dumps[1]["batches"][0]["images"])
    # identical parameters on both ranks, and the loss terms were averaged over them alike
    p0, p1 = dumps[0]["params"], dumps[1]["params"]
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    assert dumps[0]["terms"] == dumps[1]["terms"]
    # equal to one process on the joint batch, up to float summation order in the all-reduce
    reference = _replay_in_one_process(dumps)
    for k in p0:
        torch.testing.assert_close(p0[k], reference[k], rtol=1e-5, atol=1e-6, msg=f"parameter {k}")
    # ... and not to rank 0's own batch alone: the gradients really were averaged
    alone = _replay_in_one_process(dumps[:1])
    assert max((p0[k] - alone[k]).abs().max().item() for k in p0) > 1e-4
    # only rank 0 wrote: one record per step, one checkpoint holding both ranks' RNG streams
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, STEPS + 1))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["step"] == STEPS
    assert not torch.equal(state["ranks"][0]["noise"], state["ranks"][1]["noise"])
    assert all(torch.equal(state["model"][k], p0[k]) for k in p0)
