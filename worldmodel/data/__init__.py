"""Episodes on disk, dataset folders, and the chunk sampler that feeds training.

Notation (see `worldmodel.data.batch` for the alignment): an episode has T transitions,
images o_0..o_T [T+1, H, W, 3] uint8, actions a_0..a_{T-1} [T, A], rewards r_0..r_{T-1} [T]
(r_t is received for a_t) and true states [T+1, S]. Training batches are B chunks of L steps:
images [B, L, 3, H, W] float32 in [-0.5, 0.5], actions [B, L, A], rewards [B, L], states [B, L, S].

    save_episode / load_episode   one episode <-> one compressed .npz (atomic writes)
    EpisodeDataset                a folder of episode files plus manifest.json; append-only
    ChunkSampler                  uniform random windows of length L -> Batch
"""
from worldmodel.data.batch import Batch
from worldmodel.data.dataset import EpisodeDataset
from worldmodel.data.episode import DataError, Episode, load_episode, save_episode
from worldmodel.data.sampler import ChunkSampler

__all__ = ["Batch", "ChunkSampler", "DataError", "Episode", "EpisodeDataset", "load_episode", "save_episode"]
