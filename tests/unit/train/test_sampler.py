from streamguard.train.sampler import ResumableSampler


def test_resumed_epoch_sees_exactly_the_remaining_samples():
    data = list(range(103))
    full = list(ResumableSampler(data, num_replicas=1, rank=0, seed=5, epoch=2, start_batch=0, batch_size=10))
    rest = list(ResumableSampler(data, num_replicas=1, rank=0, seed=5, epoch=2, start_batch=4, batch_size=10))
    assert sorted(full) == data
    assert rest == full[40:]
    other_epoch = list(ResumableSampler(data, num_replicas=1, rank=0, seed=5, epoch=3, start_batch=0, batch_size=10))
    assert other_epoch != full


def test_ranks_partition_the_epoch():
    data = list(range(100))
    shards = [list(ResumableSampler(data, num_replicas=2, rank=r, seed=0, epoch=0, start_batch=0, batch_size=8))
              for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data
