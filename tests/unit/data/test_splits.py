"""Tests for dedup, train/valid/test split strategies and k-fold assignment."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from streamguard.data.splits import SPLITS, assign_folds, assign_splits, dedup
from streamguard.data.sources import text_hash
from streamguard.errors import ConfigError, DataError


def rec(i: int, func: str, target: int, **extra) -> dict:
    return {"idx": i, "func": func, "target": target, "group": "text-" + text_hash(func), "cwe": "", "project": "",
            "lang": "c", "commit_id": "", "date": "", "source": "devign", **extra}


def corpus(n: int = 600, *, projects: int = 8, seed: int = 0, dated: bool = False) -> list[dict]:
    """Functions with some duplicate texts (also re-indented ones); projects of uneven size."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        base = rng.randrange(n // 2)             # ~half the texts repeat
        func = f"int f{base}(int x) {{ return x + {base}; }}"
        if rng.random() < 0.3:
            func = func.replace(" ", "   ")      # the same text, re-indented
        # uneven project sizes, and a text always belongs to one project
        project = f"proj{min(projects - 1, int((base / (n // 2)) ** 1.5 * projects))}"
        date = f"20{10 + base % 12:02d}-{1 + base % 12:02d}-{1 + base % 28:02d}" if dated else ""
        out.append(rec(i, func, int(base % 3 == 0), project=project, date=date))
    return out


def split_of(result: dict[str, list[dict]]) -> dict[str, str]:
    where: dict[str, str] = {}
    for name, rows in result.items():
        for r in rows:
            assert where.setdefault(r["group"], name) == name, f"group {r['group']} straddles splits"
    return where


# ---------------------------------------------------------------- dedup

def test_dedup_keeps_first_occurrence_whitespace_insensitively():
    records = [rec(0, "int a;", 0), rec(1, "int   a;", 0), rec(2, "int b;", 1), rec(3, "int\n\tb;", 1),
               rec(4, "int c;", 1)]
    kept, counts = dedup(records, drop_conflicting=False)
    assert [r["idx"] for r in kept] == [0, 2, 4]
    assert counts == {"duplicates": 2, "conflicting_dropped": 0}


def test_dedup_devign_like_conflicting_duplicates():
    # Devign has the same function text labelled both vulnerable and not (different commits).
    records = [rec(0, "int a;", 0), rec(1, "int a;", 1), rec(2, "int  a;", 0), rec(3, "int b;", 1),
               rec(4, "int b;", 1), rec(5, "int c;", 0)]
    kept, counts = dedup(records, drop_conflicting=True)
    assert [r["idx"] for r in kept] == [3, 5]
    assert counts == {"duplicates": 1, "conflicting_dropped": 3}
    kept, counts = dedup(records, drop_conflicting=False)
    assert [r["idx"] for r in kept] == [0, 3, 5] and kept[0]["target"] == 0   # first occurrence wins
    assert counts == {"duplicates": 3, "conflicting_dropped": 0}


def test_dedup_uses_text_not_synthetic_twin_groups():
    # synthetic twins share a group but differ in text and label: not duplicates
    records = [{"idx": 0, "func": "int v;", "target": 1, "group": "pair-0"},
               {"idx": 1, "func": "int f;", "target": 0, "group": "pair-0"}]
    kept, counts = dedup(records, drop_conflicting=True)
    assert len(kept) == 2 and counts == {"duplicates": 0, "conflicting_dropped": 0}


def test_dedup_counts_add_up():
    records = corpus(500)
    for drop in (False, True):
        kept, counts = dedup(records, drop_conflicting=drop)
        assert len(kept) + counts["duplicates"] + counts["conflicting_dropped"] == len(records)
        assert len({text_hash(r["func"]) for r in kept}) == len(kept)


# ---------------------------------------------------------------- random

def split_records(records, *, valid_fraction, test_fraction, seed):
    """The original dataset.split_records (before splits.py), kept here as the reference."""
    groups = sorted({r["group"] for r in records})
    random.Random(seed).shuffle(groups)
    n_test, n_valid = round(len(groups) * test_fraction), round(len(groups) * valid_fraction)
    assign = {g: "test" for g in groups[:n_test]}
    assign.update({g: "valid" for g in groups[n_test:n_test + n_valid]})
    out = {s: [] for s in ("train", "valid", "test")}
    for r in records:
        out[assign.get(r["group"], "train")].append(r)
    return out


def test_random_matches_dataset_split_records():
    records = corpus(500)
    for seed in (0, 3):
        ours = assign_splits(records, strategy="random", valid_fraction=0.1, test_fraction=0.2, seed=seed)
        assert ours == split_records(records, valid_fraction=0.1, test_fraction=0.2, seed=seed)
    plain = [{"group": f"g{i // 2}", "idx": i} for i in range(400)]
    a = assign_splits(plain, strategy="random", valid_fraction=0.1, test_fraction=0.2, seed=3)
    assert len(a["test"]) == 80 and len(a["valid"]) == 40 and sum(map(len, a.values())) == 400


def test_random_groups_fractions_determinism():
    records = corpus(800)
    a = assign_splits(records, strategy="random", valid_fraction=0.1, test_fraction=0.2, seed=1)
    assert a == assign_splits(records, strategy="random", valid_fraction=0.1, test_fraction=0.2, seed=1)
    assert a != assign_splits(records, strategy="random", valid_fraction=0.1, test_fraction=0.2, seed=2)
    split_of(a)
    assert sum(map(len, a.values())) == len(records)
    assert 0.1 < len(a["test"]) / len(records) < 0.3 and 0.03 < len(a["valid"]) / len(records) < 0.17


# ---------------------------------------------------------------- project

def test_project_split_keeps_projects_whole():
    records = corpus(1000, projects=10)
    a = assign_splits(records, strategy="project", valid_fraction=0.1, test_fraction=0.2, seed=0)
    assert a == assign_splits(records, strategy="project", valid_fraction=0.1, test_fraction=0.2, seed=0)
    split_of(a)
    projects = defaultdict(set)
    for name, rows in a.items():
        for r in rows:
            projects[r["project"]].add(name)
    assert all(len(s) == 1 for s in projects.values())
    assert all(a[s] for s in SPLITS)
    assert sum(map(len, a.values())) == len(records)
    n = len(records)
    assert len(a["train"]) / n > 0.5 and 0.05 < len(a["test"]) / n < 0.4 and 0 < len(a["valid"]) / n < 0.3


def test_project_split_fractions_with_many_equal_projects():
    records = [rec(i, f"int f{i};", i % 2, project=f"p{i // 10}") for i in range(1000)]   # 100 projects of 10
    a = assign_splits(records, strategy="project", valid_fraction=0.1, test_fraction=0.2, seed=5)
    assert (len(a["train"]), len(a["valid"]), len(a["test"])) == (700, 100, 200)


def test_project_split_joins_projects_sharing_a_function():
    records = [rec(0, "int shared;", 1, project="a"), rec(1, "int shared;", 1, project="b")]
    records += [rec(10 + i, f"int f{i};", i % 2, project=p) for i, p in enumerate("aabbccddee" * 3)]
    a = assign_splits(records, strategy="project", valid_fraction=0.2, test_fraction=0.2, seed=0)
    where = split_of(a)
    by_project = {r["project"]: name for name, rows in a.items() for r in rows}
    assert by_project["a"] == by_project["b"] == where[records[0]["group"]]


def test_project_split_needs_three_projects():
    records = [rec(i, f"int f{i};", i % 2, project=f"p{i % 2}") for i in range(50)]
    with pytest.raises(DataError, match="at least 3 projects.*found 2"):
        assign_splits(records, strategy="project", valid_fraction=0.1, test_fraction=0.1, seed=0)


# ---------------------------------------------------------------- time

def test_time_split_orders_oldest_to_newest():
    records = corpus(900, dated=True)
    a = assign_splits(records, strategy="time", valid_fraction=0.1, test_fraction=0.2, seed=0)
    assert a == assign_splits(records, strategy="time", valid_fraction=0.1, test_fraction=0.2, seed=0)
    split_of(a)
    assert sum(map(len, a.values())) == len(records)
    # a group's date is its earliest record's; here each text has one date
    assert max(r["date"] for r in a["train"]) <= min(r["date"] for r in a["valid"])
    assert max(r["date"] for r in a["valid"]) <= min(r["date"] for r in a["test"])
    n = len(records)
    assert abs(len(a["test"]) / n - 0.2) < 0.05 and abs(len(a["valid"]) / n - 0.1) < 0.05


def test_time_split_undated_records_go_to_train():
    records = [rec(i, f"int f{i};", i % 2, date=f"2020-01-{1 + i:02d}") for i in range(20)]
    records += [rec(100 + i, f"int u{i};", 1) for i in range(5)]
    a = assign_splits(records, strategy="time", valid_fraction=0.2, test_fraction=0.2, seed=0)
    assert all(r["date"] for r in a["valid"] + a["test"])
    assert sum(1 for r in a["train"] if not r["date"]) == 5
    assert [r["date"] for r in a["test"]] == [f"2020-01-{d:02d}" for d in range(16, 21)]


def test_time_split_without_dates_is_an_error():
    records = [rec(i, f"int f{i};", i % 2, commit_id=f"{i:040x}") for i in range(30)]
    with pytest.raises(DataError, match="no record has a 'date'"):
        assign_splits(records, strategy="time", valid_fraction=0.1, test_fraction=0.1, seed=0)


def test_bad_strategy_and_fractions():
    records = corpus(50)
    with pytest.raises(ConfigError, match="unknown split strategy 'cwe'"):
        assign_splits(records, strategy="cwe", valid_fraction=0.1, test_fraction=0.1, seed=0)
    with pytest.raises(ConfigError, match="fractions"):
        assign_splits(records, strategy="random", valid_fraction=0.5, test_fraction=0.5, seed=0)


# ---------------------------------------------------------------- folds

def test_folds_by_group_balanced_and_deterministic():
    records = corpus(1200)
    folds = assign_folds(records, k=5, seed=0)
    assert folds == assign_folds(records, k=5, seed=0)
    assert folds != assign_folds(records, k=5, seed=1)
    assert len(folds) == len(records) and set(folds) == set(range(5))
    fold_of_group: dict[str, int] = {}
    for r, f in zip(records, folds):
        assert fold_of_group.setdefault(r["group"], f) == f
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 0.05 * len(records)
    positives = Counter(f for r, f in zip(records, folds) if r["target"] == 1)
    total_pos = sum(positives.values())
    for f in range(5):
        assert abs(positives[f] - total_pos / 5) <= 0.05 * total_pos + 3


def test_folds_with_mixed_label_groups():
    # synthetic-style twins: a vulnerable and a fixed function sharing one group
    records = []
    for i in range(300):
        records += [{"idx": 2 * i, "group": f"pair-{i}", "target": 1}, {"idx": 2 * i + 1, "group": f"pair-{i}", "target": 0}]
    records += [{"idx": 1000 + i, "group": f"benign-{i}", "target": 0} for i in range(100)]
    folds = assign_folds(records, k=4, seed=2)
    for i in range(300):
        assert folds[2 * i] == folds[2 * i + 1]
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 2
    pos = Counter(f for r, f in zip(records, folds) if r["target"] == 1)
    assert max(pos.values()) - min(pos.values()) <= 1


def test_folds_errors():
    with pytest.raises(ConfigError):
        assign_folds([{"group": "a", "target": 0}], k=1, seed=0)
    with pytest.raises(DataError, match="at least 3 groups"):
        assign_folds([{"group": g, "target": 0} for g in "ab"], k=3, seed=0)
