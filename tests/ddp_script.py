"""Run under `torchrun --nproc_per_node=K` by tests/test_ddp.py: trains the tiny model with the
ordinary `worldmodel.train.train` and, as a debugging hook, dumps each rank's batches and final
parameters to OUT/rank<r>.pt so the test can compare ranks and replay the updates in one process.

usage: torchrun --standalone --nproc_per_node=2 tests/ddp_script.py DATA RUN OUT STEPS
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import tiny_model_config, tiny_train_config  # noqa: E402

from worldmodel.data import ChunkSampler  # noqa: E402
from worldmodel.train import Trainer, train  # noqa: E402


def main() -> None:
    data, run, out, steps = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    batches: list = []
    sample, train_step = ChunkSampler.sample, Trainer.train_step

    def recording_sample(self):
        batch = sample(self)
        batches.append({"images": batch.images, "actions": batch.actions, "rewards": batch.rewards})
        return batch

    def dumping_step(self, stop_requested=False):
        result = train_step(self, stop_requested)
        if self.step == steps:
            torch.save({"batches": batches, "params": self.model.state_dict(), "terms": result},
                       out / f"rank{rank}.pt")
        return result

    ChunkSampler.sample, Trainer.train_step = recording_sample, dumping_step
    train(tiny_model_config(), tiny_train_config(steps=steps, checkpoint_every=2), data, run, progress=False)


if __name__ == "__main__":
    main()
