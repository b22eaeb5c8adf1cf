"""Writes streamguard-dashboard.json next to this file: `python monitoring/grafana/build_dashboard.py`.

The JSON is what users import; this script is how it is edited, so that every query uses
the same selector: `{__name__=~"(ray_)?streamguard_NAME", run=~"$run", ...}` matches the
local exporter's names and the ones Ray exports (with `ray_` in front). Ray adds labels of
its own (WorkerId, NodeAddress, ...), so every query aggregates by our labels. A test
checks that the committed JSON is what this script writes.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("streamguard-dashboard.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
RUN = "run, track, trial"  # what identifies one training run (a Tune trial is one run)
RANK0 = 'rank="0"'  # rank 0 commits the checkpoints (and is the rank that knows their age)
IN_SWEEP = 'trial!=""'  # series of Tune trials


def sel(name: str, *extra: str) -> str:
    matchers = [f'__name__=~"(ray_)?streamguard_{name}"', 'run=~"$run"', 'track=~"$track"', 'trial=~"$trial"', *extra]
    return "{" + ", ".join(matchers) + "}"


def born_aware_increase(name: str, window: str) -> str:
    """Increase of a counter per run. The loop reports restarts and lost steps once, when a
    process resumes: a restarted Ray worker is a new series (new WorkerId) born at its final
    value, which increase() cannot see, so a series that did not exist `window` ago counts
    from 0. Every rank reports the same events, hence the max over ranks. Same expression
    as in monitoring/prometheus/alerts.yaml."""
    s = sel(name)
    return (f"max by ({RUN}) (sum by ({RUN}, rank) (increase({s}[{window}]) or label_replace("
            f"min_over_time({s}[{window}]) unless last_over_time({s}[5m] offset {window}), "
            f'"born_in_window", "true", "", "")))')


def target(expr: str, legend: str = "", ref: str = "A", **kw) -> dict:
    return {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend, "range": not kw.get("instant"),
            **kw}


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.y = 0
        self.x = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "id": len(self.panels) + 1})
        self.y += 1

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel = {"id": len(self.panels) + 1, "datasource": DS, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
                 **panel}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        self.y += self.row_h
        self.x, self.row_h = 0, 0


def timeseries(title: str, targets: list[dict], unit: str = "short", description: str = "", **field) -> dict:
    custom = {"lineWidth": 1, "fillOpacity": 0, "spanNulls": True, **field.pop("custom", {})}
    overrides = field.pop("overrides", [])
    return {"type": "timeseries", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom, **field}, "overrides": overrides},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, expr: str, unit: str = "short", description: str = "", decimals: int | None = None,
         thresholds: list[dict] | None = None) -> dict:
    defaults = {"unit": unit, "thresholds": {"mode": "absolute",
                                             "steps": thresholds or [{"color": "green", "value": None}]}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description,
            "targets": [target(expr, instant=True)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none", "textMode": "auto", "justifyMode": "auto"}}


def variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0, "regex": "", "options": []}


def build() -> dict:
    lay = Layout()
    by_run = f"by ({RUN})"
    red_above = lambda v: [{"color": "green", "value": None}, {"color": "red", "value": v}]

    lay.row("Overview")
    lay.add(stat("Global step", f"max {by_run} ({sel('global_step')})",
                 description="Optimizer steps of the run, across restarts (highest rank)."), 4, 4)
    lay.add(stat("Epoch", f"max {by_run} ({sel('epoch')})", description="Current epoch (0-based)."), 4, 4)
    lay.add(stat("Validation F1", f"max {by_run} ({sel('val_f1')})", decimals=3,
                 description="Vulnerable-class F1 at the best threshold, last evaluation."), 4, 4)
    lay.add(stat("Checkpoint age", f"max {by_run} ({sel('checkpoint_age_seconds', RANK0)})", unit="s",
                 thresholds=red_above(1800),
                 description="Seconds since the last committed checkpoint; red above the StreamGuardCheckpointStale "
                             "threshold (1800 s)."), 4, 4)
    lay.add(stat("Restarts in range", born_aware_increase("restarts_total", "$__range"), decimals=0,
                 thresholds=red_above(2), description="Resumes from a checkpoint within the selected time range."),
            4, 4)
    lay.add(stat("Lost steps in range", born_aware_increase("lost_steps_total", "$__range"), decimals=0,
                 description="Optimizer steps redone after resumes within the selected time range."), 4, 4)

    lay.row("Training")
    lay.add(timeseries("Loss", [
        target(f"avg {by_run} ({sel('train_loss')})", "train {{run}} {{trial}}"),
        target(f"max {by_run} ({sel('val_loss')})", "val {{run}} {{trial}}", ref="B"),
    ], description="Training loss (mean over the reporting window, averaged over ranks) and validation loss."), 12, 8)
    lay.add(timeseries("Validation F1", [target(f"max {by_run} ({sel('val_f1')})", "{{run}} {{trial}}")],
                       unit="short", min=0, max=1,
                       description="Vulnerable-class F1 at the best threshold; early stopping watches it."), 12, 8)
    lay.add(timeseries("Throughput", [
        target(f"avg {by_run} ({sel('samples_per_second')})", "{{run}} {{trial}}"),
    ], unit="short", description="Training samples per second of the whole run (each rank estimates it as its "
                                 "samples x world size / time; averaged over ranks)."), 12, 8)
    lay.add(timeseries("Epoch and global step", [
        target(f"max {by_run} ({sel('global_step')})", "step {{run}} {{trial}}"),
        target(f"max {by_run} ({sel('epoch')})", "epoch {{run}} {{trial}}", ref="B"),
    ], description="A flat step line while the run is up is what StreamGuardTrainingStalled fires on.",
        overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                    "properties": [{"id": "custom.axisPlacement", "value": "right"},
                                   {"id": "custom.drawStyle", "value": "line"}]}]), 12, 8)
    lay.add(timeseries("Learning rate", [target(f"max {by_run} ({sel('learning_rate')})", "{{run}} {{trial}}")],
                       unit="sci"), 24, 6)

    lay.row("Checkpoints and failures")
    lay.add(timeseries("Checkpoint age", [
        target(f"max {by_run} ({sel('checkpoint_age_seconds', RANK0)})", "{{run}} {{trial}}"),
    ], unit="s", description="Seconds since rank 0 last committed a checkpoint (since it started, before its first). "
                             "A saw-tooth is healthy; the red line is the alert threshold.",
        thresholds={"mode": "absolute", "steps": red_above(1800)}, custom={"thresholdsStyle": {"mode": "line"}}),
        6, 8)
    lay.add(timeseries("Checkpoint duration", [
        target(f"histogram_quantile({q}, sum by (le, {RUN}) (rate({sel('checkpoint_duration_seconds_bucket', RANK0)}[15m])))",
               f"p{int(q * 100)} {{{{run}}}} {{{{trial}}}}", ref=ref)
        for q, ref in ((0.5, "A"), (0.95, "B"))
    ], unit="s", description="Time to write and commit a checkpoint on rank 0 (the others only wait for it), "
                             "quantiles over 15 minutes."), 6, 8)
    lay.add(timeseries("Restarts (30 min window)", [
        target(born_aware_increase("restarts_total", "30m"), "{{run}} {{trial}}"),
    ], decimals=0, description="Resumes within the last 30 minutes; StreamGuardRestartsRising fires at 2.",
        custom={"drawStyle": "bars", "fillOpacity": 60}), 6, 8)
    lay.add(timeseries("Lost steps (1 h window)", [
        target(born_aware_increase("lost_steps_total", "1h"), "{{run}} {{trial}}"),
    ], decimals=0, description="Optimizer steps redone after resumes within the last hour.",
        custom={"drawStyle": "bars", "fillOpacity": 60}), 6, 8)

    lay.row("Per rank")
    by_rank = "by (run, trial, rank)"
    lay.add(timeseries("Train loss by rank", [
        target(f"avg {by_rank} ({sel('train_loss')})", "{{run}} {{trial}} rank {{rank}}"),
    ]), 8, 8)
    lay.add(timeseries("Throughput by rank", [
        target(f"avg {by_rank} ({sel('samples_per_second')})", "{{run}} {{trial}} rank {{rank}}"),
    ], description="Each rank's estimate of the run's samples/s: a rank far below the others is a straggler."), 8, 8)
    lay.add(timeseries("Global step by rank", [
        target(f"max {by_rank} ({sel('global_step')})", "{{run}} {{trial}} rank {{rank}}"),
    ]), 8, 8)

    lay.row("Sweep (Tune trials)")
    trial = sel("checkpoint_age_seconds", IN_SWEEP)  # present for every live trial process
    lay.add(stat("Trials running", f"count(count by (run, trial) ({trial})) or vector(0)",
                 description="Trials with live workers now."), 6, 4)
    lay.add(stat("Trials finished", f"(count(count by (run, trial) (last_over_time({trial}[$__range]))) - "
                                    f"(count(count by (run, trial) ({trial})) or vector(0))) or vector(0)",
                 description="Trials that reported within the time range and have no live workers now "
                             "(completed, stopped early or failed)."), 6, 4)
    lay.add(stat("Best validation F1", f"max(max_over_time({sel('val_f1', IN_SWEEP)}[$__range]))", decimals=3,
                 description="Best validation F1 of any trial within the time range."), 6, 4)
    lay.add({"type": "bargauge", "title": "Best validation F1 by trial",
             "targets": [target(f"max by (run, trial) (max_over_time({sel('val_f1', IN_SWEEP)}[$__range]))",
                                "{{trial}}", instant=True)],
             "fieldConfig": {"defaults": {"unit": "short", "min": 0, "max": 1, "decimals": 3}, "overrides": []},
             "options": {"orientation": "horizontal", "displayMode": "basic",
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}}, 6, 4)
    lay.add(timeseries("Validation F1 by trial", [
        target(f"max by (run, trial) ({sel('val_f1', IN_SWEEP)})", "{{trial}}"),
    ], unit="short", min=0, max=1), 12, 8)
    lay.add(timeseries("Train loss by trial", [
        target(f"avg by (run, trial) ({sel('train_loss', IN_SWEEP)})", "{{trial}}"),
    ]), 12, 8)

    series = '{__name__=~"(ray_)?streamguard_checkpoint_age_seconds"}'
    return {
        "title": "StreamGuard training",
        "uid": "streamguard-training",
        "description": "Live training metrics of StreamGuard runs, from the local exporter (streamguard_*) "
                       "or Ray (ray_streamguard_*). See docs/monitoring.md.",
        "tags": ["streamguard", "training", "ray"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
            variable("run", "Run", f"label_values({series}, run)"),
            variable("track", "Track", f'label_values({series[:-1]}, run=~"$run"}}, track)'),
            variable("trial", "Trial", f'label_values({series[:-1]}, run=~"$run", track=~"$track"}}, trial)'),
        ]},
        "panels": lay.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
