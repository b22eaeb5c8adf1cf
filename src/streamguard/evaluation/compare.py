"""`streamguard compare A B`: are two models (runs, evaluations or ensembles) different on
the same test samples?

Each model is thresholded where it was tuned (the threshold picked on its validation
split, `external_threshold` in its metrics; 0.5 when it has none, or `--threshold` for both).
Reports each model's bootstrap intervals, the paired bootstrap of the differences B - A
(same resampled samples for both) and McNemar's test on which samples each gets right.
"""

from __future__ import annotations

import re

from streamguard.errors import DataError
from streamguard.evaluation.predictions import (
    Predictions,
    check_aligned,
    load_predictions,
)
from streamguard.evaluation.stats import bootstrap_ci, mcnemar, paired_bootstrap
from streamguard.storage import open_storage


def _threshold(p: Predictions, override: float | None) -> tuple[float, str]:
    if override is not None:
        return float(override), "given"
    if p.threshold is not None:
        return p.threshold, "validation"
    return 0.5, "default"


def compare(a_uri: str, b_uri: str, *, threshold: float | None = None, n_boot: int = 2000, seed: int = 0,
            confidence: float = 0.95, stratified: bool = True) -> dict:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise DataError(f"--threshold must lie in [0, 1], got {threshold}")
    a, b = load_predictions(a_uri), load_predictions(b_uri)
    if a.split != b.split:
        raise DataError(f"{a.uri} scored the {a.split} split and {b.uri} the {b.split} split; compare models on the "
                        "same samples")
    check_aligned([a, b], split="test")
    y = a.test.labels
    ta, how_a = _threshold(a, threshold)
    tb, how_b = _threshold(b, threshold)
    kw = {"n_boot": n_boot, "seed": seed, "confidence": confidence, "stratified": stratified}
    paired = paired_bootstrap(y, a.test.probs, b.test.probs, threshold_a=ta, threshold_b=tb, **kw)
    right_a = (a.test.probs >= ta) == (y == 1)
    right_b = (b.test.probs >= tb) == (y == 1)
    return {
        "a": {"uri": a.uri, "name": a.name, "threshold": ta, "threshold_from": how_a,
              "confidence_intervals": bootstrap_ci(y, a.test.probs, threshold=ta, **kw)},
        "b": {"uri": b.uri, "name": b.name, "threshold": tb, "threshold_from": how_b,
              "confidence_intervals": bootstrap_ci(y, b.test.probs, threshold=tb, **kw)},
        "split": a.split, "n_samples": int(y.size), "n_positive": int(y.sum()),
        "paired_bootstrap": paired,
        "mcnemar": {**mcnemar(right_a, right_b), "both_right": int((right_a & right_b).sum()),
                    "both_wrong": int((~right_a & ~right_b).sum())},
    }


def default_out(result: dict) -> str:
    clean = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", s)
    return f"compare-{clean(result['a']['name'])}-vs-{clean(result['b']['name'])}.json"


def write_json(path: str, result: dict) -> None:
    from streamguard.train.evaluate import to_json

    parent, sep, name = path.rstrip("/").rpartition("/")
    open_storage(parent if sep else ".").write_bytes(name, to_json(result).encode("utf-8"))


def print_table(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    a, b, pb, mc = result["a"], result["b"], result["paired_bootstrap"], result["mcnemar"]
    pct = round(pb["confidence"] * 100)
    t = Table(title=f"{b['name']} (B) vs {a['name']} (A): {result['n_samples']} {result['split']} samples, "
                    f"{pb['n_boot']} paired bootstrap replicates")
    for col in ("metric", f"A @ {a['threshold']:.2f}", f"B @ {b['threshold']:.2f}", "B − A", f"{pct}% CI of B − A",
                "bootstrap p"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    names = {"accuracy": "accuracy", "f1": "F1 (vulnerable)", "roc_auc": "ROC-AUC"}
    for key, m in pb["metrics"].items():
        ci_a = a["confidence_intervals"]["metrics"][key]
        ci_b = b["confidence_intervals"]["metrics"][key]
        cell = lambda v, ci: "n/a" if v is None else (
            f"{v:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]" if ci["low"] is not None else f"{v:.3f}")
        diff = "n/a" if m["difference"] is None else f"{m['difference']:+.3f}"
        ci = "n/a" if m["low"] is None else f"[{m['low']:+.3f}, {m['high']:+.3f}]"
        t.add_row(names[key], cell(m["a"], ci_a), cell(m["b"], ci_b), diff, ci,
                  "n/a" if m["p_value"] is None else f"{m['p_value']:.3f}")
    console.print(t)
    console.print(f"McNemar ({mc['method']}): A right/B wrong b={mc['b']}, A wrong/B right c={mc['c']}, "
                  f"statistic {mc['statistic']:.3f}, p = {mc['p_value']:.4g}"
                  + ("" if mc["p_value"] < 0.05 else "  (no significant difference in errors at 5%)"))

