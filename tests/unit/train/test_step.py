"""The shared step: weighted and multi-task losses, gradient accumulation, EMA; the
weighted sampler and sample weights."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from streamguard.data.shards import PreparedSplit
from streamguard.registry import Output
from streamguard.train.ema import EMA
from streamguard.train.sampler import ResumableSampler
from streamguard.train.step import compute_loss, train_group
from streamguard.train.weights import apply_sample_weights, sample_weights

CPU = torch.device("cpu")


def _out(weight=None, cwe=False):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    kw = {}
    if cwe:
        kw = {"cwe_logits": torch.randn(6, 3), "cwe_labels": (torch.rand(6, 3) > 0.5).float()}
    return Output(logits, labels, torch.arange(6), weight=weight, **kw)


def test_weighted_loss_is_a_weighted_mean_and_equal_weights_change_nothing():
    out = _out()
    plain = compute_loss(out)
    assert compute_loss(_out(weight=torch.full((6,), 3.0))) == pytest.approx(plain.item(), rel=1e-6)
    w = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    first = torch.nn.functional.cross_entropy(out.logits[:1], out.labels[:1])
    assert compute_loss(_out(weight=w)) == pytest.approx(first.item(), rel=1e-6)


def test_multitask_loss_adds_the_weighted_cwe_bce():
    out = _out(cwe=True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.cwe_logits, out.cwe_labels)
    ce = torch.nn.functional.cross_entropy(out.logits, out.labels)
    assert compute_loss(out, binary_weight=2.0, cwe_weight=0.5).item() == pytest.approx(2 * ce.item() + 0.5 * bce.item(),
                                                                                         rel=1e-5)
    assert compute_loss(out, cwe_weight=0.0).item() == pytest.approx(ce.item(), rel=1e-6)


def _linear():
    torch.manual_seed(1)
    return torch.nn.Linear(4, 2)


def _fwd(model, batch, device):
    x, y = batch
    return Output(model(x), y, torch.zeros_like(y))


def test_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    results = []
    for groups in ([(x, y)], [(x[:8], y[:8]), (x[8:], y[8:])]):
        m = _linear()
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        loss, seen = train_group(m, groups, forward=_fwd, optimizer=opt, scaler=torch.amp.GradScaler("cpu", enabled=False),
                                device=CPU, dtype=None, grad_clip=0.0)
        results.append((m.weight.detach().clone(), loss.item(), seen))
    torch.testing.assert_close(results[0][0], results[1][0])
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-6) and results[0][2] == results[1][2] == 16


def test_ema_tracks_the_weights_and_round_trips():
    m = _linear()
    ema = EMA(m, decay=0.9)
    start = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)  # warm-up decay min(0.9, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], d * start + (1 - d) * (start + 1.0))
    with ema.applied(m):
        torch.testing.assert_close(m.weight, ema.shadow["weight"])
    torch.testing.assert_close(m.weight, start + 1.0)  # restored
    other = EMA(_linear(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    torch.testing.assert_close(other.shadow["weight"], ema.shadow["weight"])


def test_weighted_sampler_is_reproducible_resumable_and_follows_weights():
    data = list(range(200))
    w = np.where(np.arange(200) < 20, 9.0, 1.0)  # the first 20 carry half the mass
    kw = dict(num_replicas=1, rank=0, seed=3, epoch=1, batch_size=10, weights=w)
    full = list(ResumableSampler(data, start_batch=0, **kw))
    assert full == list(ResumableSampler(data, start_batch=0, **kw))
    assert list(ResumableSampler(data, start_batch=5, **kw)) == full[50:]
    assert 0.35 < np.mean(np.asarray(full) < 20) < 0.65
    ranks = [list(ResumableSampler(data, start_batch=0, **{**kw, "num_replicas": 2, "rank": r})) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 100


def _split(target, weight=None):
    cols = {"idx": pa.array(range(len(target)), pa.int64()), "target": pa.array(target, pa.int8())}
    if weight is not None:
        cols["weight"] = pa.array(weight, pa.float32())
    return PreparedSplit(pa.table(cols))


def test_sample_weights_balance_classes_or_read_the_column():
    s = _split([0, 0, 0, 1])
    w = sample_weights(s, "balanced")
    assert w[:3].sum() == pytest.approx(w[3]) and w.mean() == pytest.approx(1.0)
    c = sample_weights(_split([0, 1, 0], [2.0, None, 0.0]), "column")
    assert c.tolist() == pytest.approx([2.0, 1.0, 0.0])
    assert apply_sample_weights(s, mode="balanced", weighted_sampling=True) is not None and s.sample_weight is None
    assert apply_sample_weights(s, mode="balanced", weighted_sampling=False) is None and s.sample_weight is not None
    assert sample_weights(s, "none") is None
