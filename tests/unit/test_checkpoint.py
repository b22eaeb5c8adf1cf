import json
import random

import numpy as np
import pytest
import torch

from streamguard import checkpoint
from streamguard.checkpoint import CheckpointStore, TrainState
from streamguard.errors import CheckpointError
from streamguard.storage import LocalStorage, sha256_file


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _save(tmp, step, metric=None, seed=0):
    model = _model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    state = TrainState(epoch=1, global_step=step, step_in_epoch=3, best_metric=metric)
    checkpoint.save(tmp, model=model, optimizer=opt, scheduler=sched, state=state,
                    config_yaml="run: {}\n", config_hash="abc", metric=metric)
    return model, opt


def test_round_trip_restores_weights_optimizer_state_and_rng(tmp_path):
    model, opt = _save(tmp_path / "c", 7)
    random.seed(1); np.random.seed(1); torch.manual_seed(1)
    checkpoint.save(tmp_path / "d", model=model, optimizer=opt, state=TrainState(global_step=8),
                    config_yaml="", config_hash="abc")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    fresh = _model(seed=99)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    state = checkpoint.load(tmp_path / "d", model=fresh, optimizer=opt2)
    assert state.global_step == 8
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_manifest_lists_every_file_with_sha256(tmp_path):
    _save(tmp_path / "c", 1)
    manifest = json.loads((tmp_path / "c" / checkpoint.MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.safetensors", "optimizer.pt", "scheduler.pt", "state.json", "config.yaml"}
    state = json.loads((tmp_path / "c" / "state.json").read_text())
    assert {"epoch", "global_step", "step_in_epoch", "rng", "best_metric", "config_hash"} <= set(state)


@pytest.mark.parametrize("damage", ["truncate", "no_manifest", "flip_byte", "missing_file"])
def test_verify_rejects_damaged_checkpoints(tmp_path, damage):
    d = tmp_path / "c"
    _save(d, 1)
    weights = d / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:50])
    elif damage == "no_manifest":
        (d / checkpoint.MANIFEST).unlink()
    elif damage == "flip_byte":
        data = bytearray(weights.read_bytes()); data[-1] ^= 0xFF; weights.write_bytes(bytes(data))
    else:
        (d / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError):
        checkpoint.verify(d)
    with pytest.raises(CheckpointError):
        checkpoint.load(d, model=_model())


def test_load_rejects_weights_of_another_model(tmp_path):
    _save(tmp_path / "c", 1)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        checkpoint.load(tmp_path / "c", model=torch.nn.Linear(4, 2))


def _commit(store, tmp_path, step, metric=None):
    local = tmp_path / f"local{step}"
    _save(local, step, metric)
    store.commit(local, checkpoint.checkpoint_name(step))


def test_store_falls_back_past_corrupt_newest_with_warning(tmp_path, caplog):
    store = CheckpointStore(LocalStorage(tmp_path / "ckpts"), keep_last=5)
    for step in (10, 20, 30):
        _commit(store, tmp_path, step)
    newest = tmp_path / "ckpts" / "step_000000030" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated safetensors
    (tmp_path / "ckpts" / "step_000000040").mkdir()  # a crashed upload: no manifest
    found = store.latest_valid()
    assert found.name == "step_000000020"
    assert "skipping checkpoint step_000000040" in caplog.text
    assert "skipping checkpoint step_000000030" in caplog.text


def test_retention_keeps_last_k_and_best(tmp_path):
    store = CheckpointStore(LocalStorage(tmp_path / "ckpts"), keep_last=2, keep_best=True)
    for step, metric in ((1, 0.5), (2, 0.9), (3, 0.6), (4, 0.7), (5, 0.65)):
        _commit(store, tmp_path, step, metric)
    assert store.names() == ["step_000000002", "step_000000004", "step_000000005"]
    assert store.best_valid().name == "step_000000002"


def test_no_checkpoint_means_none(tmp_path):
    assert CheckpointStore(LocalStorage(tmp_path / "none")).latest_valid() is None


def test_pickled_code_in_optimizer_file_is_refused(tmp_path):
    """weights_only=True: a malicious optimizer.pt cannot run code on load."""
    d = tmp_path / "c"
    _save(d, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state": Evil()}, d / "optimizer.pt")
    # re-sign the manifest so only the unpickling guard stands in the way
    manifest = json.loads((d / checkpoint.MANIFEST).read_text())
    manifest["files"]["optimizer.pt"] = {"sha256": sha256_file(d / "optimizer.pt"),
                                         "size": (d / "optimizer.pt").stat().st_size}
    (d / checkpoint.MANIFEST).write_text(json.dumps(manifest))
    model = _model()
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        checkpoint.load(d, model=model, optimizer=torch.optim.AdamW(model.parameters()))
