"""What the tracks read from prepared data: confidence weights, CWE targets, held-out
folds, the tokenizer fingerprint in the cache key, and `data augment` encoder features."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from streamguard import config
from streamguard.data.dataset import cwe_targets, cwe_vocabulary, load_splits
from streamguard.data.prepare import PrepareSettings, prepare
from streamguard.data.process import ProcessSettings
from streamguard.data.shards import GraphDataset, TokenDataset, collate_tokens
from streamguard.errors import DataError
from tests.models import tiny_roberta


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_confidence_weights_travel_from_the_source_to_batches(tmp_path):
    from streamguard.data.synthetic import generate_samples

    rows = [{"func": r["func"], "target": r["target"], "idx": i, "project": "p",
             **({"confidence": 0.25} if i % 2 else {})} for i, r in enumerate(generate_samples(60, seed=1))]
    src = _jsonl(tmp_path / "w.jsonl", rows)
    cfg = config.load("quickstart", [f"data.source=devign:{src}", "data.workers=1", "data.test_fraction=0",
                                     f"data.prepared_dir={tmp_path / 'p'}"])
    s = load_splits(cfg.data, seed=0)
    w = s.train.table["weight"].to_pylist()
    assert set(w) == {None, 0.25}
    from streamguard.train.weights import apply_sample_weights

    apply_sample_weights(s.train, mode="column", weighted_sampling=False)
    item = GraphDataset(s.train)[0]
    assert item.weight.shape == (1,)
    batch = collate_tokens([TokenDataset(s.train)[i] for i in range(4)], pad_id=1)
    assert batch["weight"].shape == (4,)


def test_bad_weight_is_a_counted_skip(tmp_path):
    from streamguard.data.sources import read_source

    src = _jsonl(tmp_path / "b.jsonl", [{"func": "int f(){return 0;}", "target": 0, "weight": -1},
                                        {"func": "int g(){return 1;}", "target": 1, "weight": "0.5"}])
    source = read_source(f"devign:{src}")
    assert source.skipped == {"bad_weight": 1} and source.records[0]["weight"] == 0.5


def test_cwe_vocabulary_and_multi_hot_targets():
    import pyarrow as pa

    from streamguard.data.shards import PreparedSplit

    split = PreparedSplit(pa.table({"idx": pa.array([0, 1, 2, 3], pa.int64()), "target": pa.array([1, 1, 0, 1], pa.int8()),
                                    "cwe": ["CWE-121,CWE-787", "CWE-121", "CWE-476", ""]}))
    labels = cwe_vocabulary(split)
    assert labels == ["CWE-121", "CWE-787"]  # safe rows' CWEs are not labels
    assert cwe_targets(split, labels).tolist() == [[1, 1], [1, 0], [0, 0], [0, 0]]


def test_holdout_fold_leaves_exactly_one_fold_out():
    base = ["data.synthetic_size=120", "data.workers=1", "data.folds=3"]
    full = load_splits(config.load("quickstart", base).data, seed=0)
    part = load_splits(config.load("quickstart", [*base, "data.holdout_fold=1"]).data, seed=0)
    assert set(part.holdout.fold.tolist()) == {1} and 1 not in set(part.train.fold.tolist())
    assert sorted([*part.train.idx, *part.holdout.idx]) == sorted(full.train.idx)
    assert part.info.cwe_labels == full.info.cwe_labels
    with pytest.raises(DataError, match="holdout_fold=5"):
        load_splits(config.load("quickstart", [*base, "data.holdout_fold=5"]).data, seed=0)


def test_cache_key_follows_tokenizer_content_not_its_name(tmp_path):
    src = tiny_roberta(tmp_path / "r1")
    tok_dir = tmp_path / "tok"
    shutil.copytree(src, tok_dir)
    settings = PrepareSettings(source="synthetic:40", valid_fraction=0.2, test_fraction=0.0, folds=2,
                               process=ProcessSettings(tokenizer=str(tok_dir), max_tokens=64))
    first = prepare(settings, str(tmp_path / "p"), workers=1, progress=False)
    assert first["tokenizer"]["vocab_size"] == 700 and len(first["tokenizer"]["sha256"]) == 64
    from streamguard.data.tokens import load_tokenizer

    shutil.rmtree(tok_dir)  # retrained in place: same path, other vocabulary
    shutil.copytree(tiny_roberta(tmp_path / "r2", vocab_size=600), tok_dir)
    load_tokenizer.cache_clear()
    second = prepare(settings, str(tmp_path / "p"), workers=1, progress=False)
    assert second["cache_key"] != first["cache_key"] and second["tokenizer"]["vocab_size"] == 600


def test_augment_writes_encoder_features_the_gnn_reads(tmp_path):
    from streamguard.data.augment import augment

    model = tiny_roberta(tmp_path / "r")
    prepared = tmp_path / "p"
    prepare(PrepareSettings(source="synthetic:40", valid_fraction=0.2, test_fraction=0.0, folds=2,
                            process=ProcessSettings(max_nodes=512)), str(prepared), workers=1, progress=False)
    m = augment(str(prepared), str(tmp_path / "aug"), encoder=str(model), mode="both", leaf_dim=8, max_tokens=64,
                device="cpu")
    assert m["augment"]["cls_dim"] == 32 and m["augment"]["leaf_dim"] == 8
    cfg = config.load("quickstart", [f"data.source=prepared:{tmp_path / 'aug'}"])
    s = load_splits(cfg.data, seed=0)
    assert s.info.encoder["columns"] == ["enc_cls", "enc_leaf"]
    g = GraphDataset(s.train)[0]
    assert g.enc_cls.shape == (1, 32) and g.enc_node.shape == (g.num_nodes, 8)
    leaves = g.x[:, 1] != 0
    assert np.abs(g.enc_node[~leaves].numpy()).sum() == 0 and np.abs(g.enc_node[leaves].numpy()).sum() > 0
