"""A DistributedSampler that can start mid-epoch, so a resumed run neither repeats nor
skips a sample. The permutation depends only on (seed, epoch), never on global RNG."""

from __future__ import annotations

from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    def __init__(self, dataset, *, num_replicas: int, rank: int, seed: int, epoch: int, start_batch: int,
                 batch_size: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.set_epoch(epoch)
        self.skip = start_batch * batch_size

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)
