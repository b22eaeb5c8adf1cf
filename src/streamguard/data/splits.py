"""Leakage-safe dedup, train/valid/test splits and k-fold assignment over source records.

Every function here works on `group`s (records sharing a group never straddle two splits or two
folds) and is deterministic for a given seed: the same records and config give the same split on
every rank and every restart.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

from streamguard.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
STRATEGIES = ("random", "project", "time")


def _text_key(record: dict) -> str:
    group = str(record.get("group", ""))
    if group.startswith("text-"):      # file sources: the group already is the normalised text hash
        return group
    if isinstance(record.get("func"), str):  # e.g. synthetic twins: one group, two different texts
        from streamguard.data.sources import text_hash

        return text_hash(record["func"])
    return str(record["group"])


def dedup(records: list[dict], *, drop_conflicting: bool) -> tuple[list[dict], dict[str, int]]:
    """Keep the first record of each normalised text: the `group` where it is a text hash ('text-...',
    as every file source makes it), else the whitespace-insensitive hash of `func` (synthetic twins
    share a group but are different texts), else the group itself.

    With drop_conflicting, texts seen with both labels are dropped entirely (every copy). Returns the
    kept records, in input order, and {'duplicates': copies removed, 'conflicting_dropped': records
    removed because their text had both labels}; kept + duplicates + conflicting_dropped == input.
    """
    labels: dict[str, set] = defaultdict(set)
    keys = [_text_key(r) for r in records]
    for key, r in zip(keys, records):
        labels[key].add(r.get("target"))
    kept: list[dict] = []
    seen: set[str] = set()
    duplicates = conflicting = 0
    for key, r in zip(keys, records):
        if drop_conflicting and len(labels[key]) > 1:
            conflicting += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(r)
    return kept, {"duplicates": duplicates, "conflicting_dropped": conflicting}


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0.0 <= valid_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and valid_fraction + test_fraction < 1.0):
        raise ConfigError(f"split fractions must be >= 0 and leave room for training: got valid_fraction="
                          f"{valid_fraction}, test_fraction={test_fraction}")


def assign_splits(records: list[dict], *, strategy: str, valid_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, list[dict]]:
    """records -> {'train', 'valid', 'test'} (each in input order).

    random:  groups shuffled with the seed; the first round(n_groups * test_fraction) go to test, the
             next round(n_groups * valid_fraction) to valid (the same as dataset.split_records).
    project: whole projects go to one split, greedily towards the record fractions (projects that share
             a group are kept together); at least one project per split with a non-zero share.
    time:    groups ordered by date (a group's earliest record); the oldest records -> train, then
             valid, the newest -> test, by record fractions. Records without a date go to train.
    """
    _check_fractions(valid_fraction, test_fraction)
    if strategy == "random":
        assign = _random_assign(records, valid_fraction, test_fraction, seed)
    elif strategy == "project":
        assign = _project_assign(records, valid_fraction, test_fraction, seed)
    elif strategy == "time":
        assign = _time_assign(records, valid_fraction, test_fraction, seed)
    else:
        raise ConfigError(f"unknown split strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in records:
        out[assign.get(r["group"], "train")].append(r)
    return out


def _random_assign(records, valid_fraction, test_fraction, seed) -> dict[str, str]:
    groups = sorted({r["group"] for r in records})
    random.Random(seed).shuffle(groups)
    n_test, n_valid = round(len(groups) * test_fraction), round(len(groups) * valid_fraction)
    assign = {g: "test" for g in groups[:n_test]}
    assign.update({g: "valid" for g in groups[n_test:n_test + n_valid]})
    return assign


def _project_assign(records, valid_fraction, test_fraction, seed) -> dict[str, str]:
    # Projects linked by a shared group (the same text in two projects) form one unit.
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    group_project: dict[str, str] = {}
    for r in records:
        p, g = str(r.get("project") or ""), r["group"]
        find(p)
        if g in group_project:
            a, b = find(group_project[g]), find(p)
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            group_project[g] = p
    projects = sorted(parent)
    units: dict[str, list[str]] = defaultdict(list)
    for p in projects:
        units[find(p)].append(p)
    size: dict[str, int] = defaultdict(int)
    for r in records:
        size[find(str(r.get("project") or ""))] += 1

    fractions = {"train": 1.0 - valid_fraction - test_fraction, "valid": valid_fraction, "test": test_fraction}
    active = [s for s in SPLITS if fractions[s] > 0]
    if len(projects) < 3 or len(units) < len(active):
        names = ", ".join(repr(p) for p in projects[:10]) + (", ..." if len(projects) > 10 else "")
        linked = f" ({len(units)} after joining projects that share a function)" if len(units) < len(projects) else ""
        raise DataError(f"the project split needs at least 3 projects (one per split), found {len(projects)}"
                        f"{linked}: {names}; use data.split=random or a source with more projects")
    total = sum(size.values())
    target = {s: fractions[s] * total for s in active}
    order = sorted(units)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda u: -size[u])          # largest first; ties in seeded order
    filled = {s: 0 for s in active}
    members: dict[str, list[str]] = {s: [] for s in active}
    for u in order:
        split = max(active, key=lambda s: (target[s] - filled[s], -active.index(s)))
        filled[split] += size[u]
        members[split].append(u)
    # every split with a share gets at least one unit: take the smallest from the split with the most
    for s in active:
        if not members[s]:
            donor = max((d for d in active if len(members[d]) > 1), key=lambda d: (len(members[d]), -active.index(d)))
            u = min(members[donor], key=lambda x: (size[x], order.index(x)))
            members[donor].remove(u)
            members[s].append(u)
            filled[donor] -= size[u]
            filled[s] += size[u]
    split_of_project = {p: s for s in active for u in members[s] for p in units[u]}
    return {g: split_of_project[find(p)] for g, p in group_project.items()}


def _time_assign(records, valid_fraction, test_fraction, seed) -> dict[str, str]:
    first_date: dict[str, str] = {}
    count: dict[str, int] = defaultdict(int)
    for r in records:
        g, d = r["group"], str(r.get("date") or "")
        count[g] += 1
        if d and (g not in first_date or d < first_date[g]):
            first_date[g] = d
    if not first_date:
        raise DataError("the time split needs dates, but no record has a 'date' (commit ids do not give an "
                        "order); use a source with a date column (e.g. Big-Vul publish_date / commit_date) or "
                        "data.split=random")
    undated = [g for g in count if g not in first_date]
    if undated:
        log.warning("time split: %d of %d groups have no date and go to train", len(undated), len(count))
    dated = sorted(first_date)
    random.Random(seed).shuffle(dated)
    dated.sort(key=lambda g: first_date[g])     # oldest first; same-date ties in seeded order
    n = sum(count.values())                     # fractions of all records; undated ones stay in train
    n_test, n_valid = round(n * test_fraction), round(n * valid_fraction)
    assign: dict[str, str] = {}
    taken = 0
    for g in reversed(dated):                   # newest first: test, then valid, then train
        if taken < n_test:
            assign[g] = "test"
        elif taken < n_test + n_valid:
            assign[g] = "valid"
        else:
            break
        taken += count[g]
    return assign


def assign_folds(records: list[dict], *, k: int, seed: int) -> list[int]:
    """A fold id in 0..k-1 for each record. All records of a group share a fold; groups are dealt
    (largest first, ties in seeded order) to the fold that keeps the label counts most even."""
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k!r}")
    pos: dict[str, int] = defaultdict(int)
    neg: dict[str, int] = defaultdict(int)
    for r in records:
        if int(r.get("target", 0)) == 1:
            pos[r["group"]] += 1
        else:
            neg[r["group"]] += 1
    groups = sorted(set(pos) | set(neg))
    if len(groups) < k:
        raise DataError(f"{k}-fold split needs at least {k} groups (distinct functions), found {len(groups)}")
    random.Random(seed).shuffle(groups)
    groups.sort(key=lambda g: -(pos[g] + neg[g]))
    total_pos, total_neg = max(1, sum(pos.values())), max(1, sum(neg.values()))
    fold_pos, fold_neg, fold_n = [0] * k, [0] * k, [0] * k
    fold_of: dict[str, int] = {}
    for g in groups:
        # cost: how full the fold would be in the labels this group brings (relative to each label's total)
        def cost(f: int) -> tuple:
            load = 0.0
            if pos[g]:
                load = max(load, (fold_pos[f] + pos[g]) / total_pos)
            if neg[g]:
                load = max(load, (fold_neg[f] + neg[g]) / total_neg)
            return load, fold_n[f], f

        f = min(range(k), key=cost)
        fold_of[g] = f
        fold_pos[f] += pos[g]
        fold_neg[f] += neg[g]
        fold_n[f] += pos[g] + neg[g]
    return [fold_of[r["group"]] for r in records]
