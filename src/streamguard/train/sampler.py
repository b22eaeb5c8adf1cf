"""A DistributedSampler that can start mid-epoch, so a resumed run neither repeats nor
skips a sample. The permutation depends only on (seed, epoch), never on global RNG.

With `weights`, each epoch instead draws len(dataset) samples with replacement in
proportion to the weights (class balance or confidence weighting), from a generator seeded
by (seed, epoch): the draw is as reproducible, and as resumable, as the permutation. Ranks
take interleaved slices of the draw.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    def __init__(self, dataset, *, num_replicas: int, rank: int, seed: int, epoch: int, start_batch: int,
                 batch_size: int, shuffle: bool = True, weights: np.ndarray | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if self.weights is not None and not (self.weights.sum() > 0):
            raise ValueError("sample weights sum to zero: nothing to draw")
        self.set_position(epoch, start_batch, batch_size)

    def set_position(self, epoch: int, start_batch: int, batch_size: int) -> None:
        """Where the next iteration starts: `start_batch` batches into `epoch`."""
        self.set_epoch(epoch)
        self.skip = start_batch * batch_size

    def __iter__(self):
        if self.weights is None:
            indices = list(super().__iter__())
        else:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g).tolist()
            indices = drawn[self.rank:self.total_size:self.num_replicas]
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)
