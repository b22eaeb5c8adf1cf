"""Score a model on a split and write the standard artefacts: metrics.json (one schema for
every track), predictions.json and PNG plots. Used at the end of training and by
`streamguard evaluate`."""

from __future__ import annotations

import logging
from pathlib import Path

from streamguard.train.evaluate import compute_metrics

log = logging.getLogger(__name__)


def write_report(out, *, labels, probs, sample_ids, split: str, threshold: float | None,
                 history: list[dict] | None, plots: bool, extra: dict | None = None,
                 valid: dict | None = None) -> dict:
    """`out` is a RunDir-like object (write_json, path, publish). Returns the metrics.
    `valid`: the validation split's scores ({labels, probs, ids}, as `predict_outputs`
    returns them), saved beside the scored split in predictions.json under `valid` (what
    `streamguard ensemble` averages to pick its threshold)."""
    metrics = compute_metrics(labels, probs, threshold=threshold)
    metrics.update({"split": split, **(extra or {})})
    for warning in metrics.get("warnings", []):
        log.warning("%s split: %s", split, warning)
    out.write_json("metrics.json", metrics)
    predictions = {"split": split, "sample_id": [int(i) for i in sample_ids],
                   "label": [int(y) for y in labels], "prob": [float(p) for p in probs]}
    if valid is not None:
        predictions["valid"] = {"sample_id": [int(i) for i in valid["ids"]], "label": [int(y) for y in valid["labels"]],
                                "prob": [float(p) for p in valid["probs"]]}
    out.write_json("predictions.json", predictions)
    if history is not None:
        out.write_json("history.json", history)
    if plots:
        from streamguard.evaluation.plots import save_report_plots

        written = save_report_plots(out.path("plots"), labels, probs, metrics, history)
        for path in written.values():
            out.publish(str(Path(path).relative_to(out.local)))
    return metrics
