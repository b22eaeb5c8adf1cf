"""Tests for the embedded synthetic dataset generator."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamguard.data.synthetic import CWE_FAMILIES, GENERATOR_VERSION, generate_samples

KEYS = {"idx", "func", "target", "cwe", "project", "group"}


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    return generate_samples(2000, seed=0)


def test_version_and_families():
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION
    assert isinstance(CWE_FAMILIES, tuple) and len(CWE_FAMILIES) >= 10
    assert len(set(CWE_FAMILIES)) == len(CWE_FAMILIES)
    for required in ("CWE-121", "CWE-122", "CWE-134", "CWE-190", "CWE-416", "CWE-415",
                     "CWE-476", "CWE-193", "CWE-78", "CWE-252"):
        assert required in CWE_FAMILIES


def test_determinism_same_seed():
    assert generate_samples(300, seed=7) == generate_samples(300, seed=7)


def test_different_seed_differs():
    a = [s["func"] for s in generate_samples(300, seed=1)]
    b = [s["func"] for s in generate_samples(300, seed=2)]
    assert a != b
    assert len(set(a) & set(b)) < 30


def test_determinism_across_processes():
    # Output must not depend on PYTHONHASHSEED (e.g. set iteration order).
    src = str(Path(__file__).resolve().parents[3] / "src")
    code = ("import hashlib, json; from streamguard.data.synthetic import generate_samples; "
            "print(hashlib.sha256(json.dumps(generate_samples(200, 5), sort_keys=True).encode()).hexdigest())")
    digests = set()
    for hashseed in ("0", "123"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=src)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_no_global_random_dependence():
    import random

    random.seed(1)
    a = generate_samples(100, seed=3)
    random.seed(999)
    b = generate_samples(100, seed=3)
    assert a == b


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 12, 101, 1000])
def test_exact_count(n):
    out = generate_samples(n, seed=0)
    assert len(out) == n
    assert [s["idx"] for s in out] == list(range(n))


def test_negative_n_rejected():
    with pytest.raises(ValueError):
        generate_samples(-1)


def test_keys_and_types(samples):
    for s in samples:
        assert set(s) == KEYS
        assert isinstance(s["idx"], int)
        assert isinstance(s["func"], str) and s["func"].strip()
        assert s["target"] in (0, 1) and isinstance(s["target"], int)
        assert isinstance(s["cwe"], str)
        assert s["project"] == "synthetic"
        assert isinstance(s["group"], str) and s["group"]
        if s["target"] == 1:
            assert s["cwe"] in CWE_FAMILIES
        else:
            assert s["cwe"] == "" or s["cwe"] in CWE_FAMILIES


def test_family_coverage_and_balance(samples):
    labels = collections.defaultdict(set)
    for s in samples:
        labels[s["cwe"]].add(s["target"])
    for fam in CWE_FAMILIES:
        assert labels[fam] == {0, 1}, fam
    assert labels[""] == {0}
    n = len(samples)
    distractors = sum(1 for s in samples if s["cwe"] == "")
    assert 0.15 <= distractors / n <= 0.25
    vuln = sum(s["target"] for s in samples) / n
    assert 0.40 <= vuln <= 0.55


def test_small_n_still_covers_every_family():
    out = generate_samples(60, seed=4)
    flawed = {s["cwe"] for s in out if s["target"] == 1}
    assert flawed == set(CWE_FAMILIES)


def test_twins_share_group(samples):
    by_group = collections.defaultdict(list)
    for s in samples:
        by_group[s["group"]].append(s)
    for group, members in by_group.items():
        flawed = [m for m in members if m["target"] == 1]
        if not flawed:
            # a distractor: alone in its group
            assert len(members) == 1 and members[0]["cwe"] == "", group
            continue
        assert len(flawed) == 1 and len(members) == 2, group
        (bad,) = flawed
        (good,) = [m for m in members if m["target"] == 0]
        assert good["cwe"] == bad["cwe"] != ""
        assert good["func"] != bad["func"]
        # Same skeleton: same signature line(s), only the fix differs.
        assert good["func"].split("(")[0] == bad["func"].split("(")[0]


def test_twins_differ_by_a_small_fix(samples):
    import difflib

    by_group = collections.defaultdict(dict)
    for s in samples:
        if s["cwe"]:
            by_group[s["group"]][s["target"]] = s["func"].splitlines()
    for pair in by_group.values():
        a, b = pair[1], pair[0]
        changed = sum(1 for line in difflib.ndiff(a, b) if line[:1] in "+-")
        assert 0 < changed <= 14, (a, b)


def test_all_parse_without_errors(samples):
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_c = pytest.importorskip("tree_sitter_c")
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))
    bad = []
    for s in samples:
        root = parser.parse(s["func"].encode()).root_node
        if root.has_error:
            bad.append(s["func"])
        # exactly one function definition, nothing else at the top level
        elif [c.type for c in root.named_children] != ["function_definition"]:
            bad.append(s["func"])
    assert not bad, bad[:3]


def test_variety(samples):
    funcs = [s["func"] for s in samples]
    assert len(set(funcs)) / len(funcs) > 0.9
    normalised = {re.sub(r"\s+", " ", f).strip() for f in funcs}
    assert len(normalised) / len(funcs) > 0.9
    names = [re.match(r"[^(]*?(\w+)\s*\(", f.replace("\n", " ")).group(1) for f in funcs]
    groups = {s["group"] for s in samples}
    assert len(set(names)) / len(groups) > 0.8  # twins share their name
    indents = {re.match(r"[ \t]*", line).group(0) for f in funcs for line in f.splitlines()[1:3] if line.strip()}
    assert {"  ", "    ", "\t"} <= indents


@pytest.mark.parametrize("token", ["strcpy", "memcpy", "sprintf", "snprintf", "strncpy", "malloc", "free",
                                   "system", "printf", "NULL", "sizeof", "if"])
def test_no_single_token_decides_the_label(samples, token):
    pat = re.compile(rf"\b{re.escape(token)}\b")
    vuln = [s for s in samples if s["target"] == 1]
    safe = [s for s in samples if s["target"] == 0]
    v_share = sum(bool(pat.search(s["func"])) for s in vuln) / len(vuln)
    s_share = sum(bool(pat.search(s["func"])) for s in safe) / len(safe)
    assert v_share > 0 and s_share > 0, (token, v_share, s_share)
    assert not (v_share > 0.95 and s_share < 0.05)
    assert not (s_share > 0.95 and v_share < 0.05)


def test_best_single_token_rule_is_weak(samples):
    # No identifier's presence/absence predicts the label much better than the majority class.
    sets = [set(re.findall(r"[A-Za-z_]\w*", s["func"])) for s in samples]
    y = [s["target"] for s in samples]
    n, pos = len(y), sum(y)
    majority = max(pos, n - pos) / n
    counts = collections.Counter(tok for toks in sets for tok in toks)
    pos_counts = collections.Counter(tok for toks, t in zip(sets, y) if t for tok in toks)
    best = 0.0
    for tok, cnt in counts.items():
        hit_pos = pos_counts[tok]
        acc = (hit_pos + (n - pos) - (cnt - hit_pos)) / n  # predict 1 iff token present
        best = max(best, acc, 1 - acc)
    assert best < majority + 0.08, best

