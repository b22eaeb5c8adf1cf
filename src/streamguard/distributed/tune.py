"""Ray Tune sweeps: Optuna (TPE, seeded) samples dotted overrides of the one config, ASHA
stops weak trials on validation F1, and every trial is one Ray Train run.

Layout of a sweep `<run.storage_path>/<sweep name>/`:

    <Tune's experiment state and trial dirs>   restore state, TensorBoard events per trial
    runs/<trial id>/                           each trial's StreamGuard run (checkpoints, metrics.json)
    results.parquet, results.csv               one row per trial: params, config, final metrics
    best_config.yaml                           `streamguard train --config best_config.yaml`
    plots/*.png                                optimisation history, importances, parallel coordinates
    sweep.json                                 summary: best trial, counts, wall time

Starting the same command again restores the sweep (`Tuner.restore`): finished trials are
kept, unfinished ones resume from their own checkpoints (a trial's run name is its trial
id, which survives the restore), and the Optuna searcher's state comes back with Tune's
experiment state. Tune pickles that state; the sweep directory must therefore be writable
only by you (as for any checkpoint you load).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from streamguard.config import Config
from streamguard.distributed.train import connect, storage_for_ray, train_on_ray
from streamguard.errors import ConfigError
from streamguard.rundir import RunDir
from streamguard.storage import join
from streamguard.sweep import Domain, SweepSpec, trial_config, validate

log = logging.getLogger(__name__)

RESULT_KEYS = ("val_f1", "val_loss", "epoch", "global_step", "test_f1", "test_f1_at_0_5", "test_roc_auc",
               "test_accuracy", "best_threshold", "status")


@dataclass
class SweepOutcome:
    root: RunDir
    results: Any  # pandas DataFrame
    best: dict | None
    wall_s: float
    restored: bool


class _EpochReports(TuneReportCallback):
    """Forward a Train run's epoch-end reports (those with validation metrics) to its Tune
    trial; mid-epoch checkpoint reports carry no validation metric and would only confuse
    ASHA's rungs."""

    def after_report(self, run_context, metrics, checkpoint):
        if metrics and "val_f1" in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def _domain(d: Domain):
    fn = {"uniform": tune.uniform, "loguniform": tune.loguniform, "quniform": tune.quniform,
          "qloguniform": tune.qloguniform, "randint": tune.randint, "choice": tune.choice}[d.kind]
    return fn(*d.args)


def _trial(params: dict, *, base: dict, spec: dict, storage_path: str) -> None:
    """One trial = one Ray Train run of the loop, named by the trial id."""
    trial_id = tune.get_context().get_trial_id()
    sweep = SweepSpec.model_validate(spec)
    cfg = trial_config(Config.from_dict(base), sweep, params, trial_id=trial_id, storage_path=storage_path)
    outcome = train_on_ray(cfg, trial=trial_id, run_label=sweep.name, callbacks=[_EpochReports()])
    final = {k: v for k, v in final_metrics(outcome.metrics or {}).items() if v is not None}
    tune.report({**final, "epoch": cfg.train.epochs, "status": outcome.status, "run_dir": outcome.run.uri})


def final_metrics(m: dict) -> dict:
    """A trial's final numbers from its run's metrics.json: validation F1 (best threshold,
    picked on validation), and the test scores at that threshold and at 0.5."""
    validation = m.get("validation") or {}
    return {"val_f1": validation.get("f1_at_best_threshold"), "test_f1": m.get("f1_at_external_threshold",
            m.get("f1_at_best_threshold")), "test_f1_at_0_5": m.get("f1_at_0_5"), "test_roc_auc": m.get("roc_auc"),
            "test_accuracy": m.get("accuracy_at_0_5"), "best_threshold": validation.get("best_threshold_by_f1")}


def max_concurrency(cfg: Config, spec: SweepSpec) -> int:
    """Trials that fit the cluster at once: CPUs (and GPUs) over one trial's workers."""
    res = ray.cluster_resources()
    r = cfg.ray
    fits = math.floor(res.get("CPU", 0) / (r.num_workers * r.cpus_per_worker))
    if r.gpus_per_worker > 0:
        fits = min(fits, math.floor(res.get("GPU", 0) / (r.num_workers * r.gpus_per_worker)))
    if fits < 1:
        raise ConfigError(f"one trial needs {r.num_workers} worker(s) x {r.cpus_per_worker} CPU"
                          f"{f' and {r.gpus_per_worker} GPU' if r.gpus_per_worker else ''}, but the cluster has "
                          f"{res.get('CPU', 0):g} CPU and {res.get('GPU', 0):g} GPU; lower ray.num_workers or add nodes")
    return min(fits, spec.max_concurrent_trials or fits, spec.num_samples)


def run_sweep(base: Config, spec: SweepSpec, *, restore: bool = True) -> SweepOutcome:
    """Run (or restore and finish) the sweep `spec.name` under `base.run.storage_path`."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    validate(base, spec)
    started_at = time.time()
    root = RunDir(base.run.storage_path, spec.name, **base.storage.model_dump())
    started = connect(base)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # experiment state: cheap, and restore loses little
    storage_path, fs = storage_for_ray(base)
    experiment = f"{storage_path}/{spec.name}"
    trials_storage = join(base.run.storage_path if "://" in base.run.storage_path else storage_path, spec.name, "runs")
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base.to_dict(), spec=spec.model_dump(mode="json"), storage_path=trials_storage),
        # The trial driver only waits on its Train run, whose workers hold the CPUs/GPUs. Tune
        # refuses an empty request, so the driver asks for 1 MiB of memory and no CPU.
        {"memory": 2**20})
    try:
        restored = restore and tune.Tuner.can_restore(experiment, storage_filesystem=fs)
        if restored:
            log.info("restoring sweep %s from %s: finished trials are kept, unfinished ones resume", spec.name,
                     root.uri)
            tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True,
                                       storage_filesystem=fs)
        else:
            domains = spec.domains()
            if spec.search and list(spec.search) != ["run.seed"]:
                search = OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seed)
            else:
                search = BasicVariantGenerator(random_state=spec.seed, constant_grid_search=True)
            epochs = Config.from_dict(_with(base.to_dict(), spec.overrides)).train.epochs
            # max_t is one past the last epoch: at max_t ASHA stops a trial at once, which would
            # cut off the trial's final scoring (test metrics, the run's metrics.json).
            scheduler = (ASHAScheduler(time_attr="epoch", metric=spec.metric, mode=spec.mode, max_t=epochs + 1,
                                       grace_period=min(spec.scheduler.grace_period, epochs),
                                       reduction_factor=spec.scheduler.reduction_factor)
                         if spec.scheduler.type == "asha" else FIFOScheduler())
            param_space = {k: _domain(d) for k, d in domains.items()}
            if list(spec.search) == ["run.seed"]:  # a seed sweep: every seed exactly once
                param_space = {"run.seed": tune.grid_search(domains["run.seed"].args[0])}
            tuner = tune.Tuner(
                trainable, param_space=param_space,
                tune_config=tune.TuneConfig(
                    search_alg=search, scheduler=scheduler,
                    metric=None if isinstance(search, OptunaSearch) else spec.metric,
                    mode=None if isinstance(search, OptunaSearch) else spec.mode,
                    num_samples=1 if "grid_search" in str(param_space) else spec.num_samples,
                    max_concurrent_trials=max_concurrency(base, spec)),
                run_config=tune.RunConfig(
                    name=spec.name, storage_path=storage_path, storage_filesystem=fs,
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures)))
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    results = _table(grid, trials_storage, base.storage.model_dump())
    best = _best(results, spec)
    outcome = SweepOutcome(root, results, best, time.time() - started_at, restored)
    write_outputs(outcome, base, spec)
    return outcome


def _with(data: dict, overrides: dict) -> dict:
    from streamguard.config import _set_dotted

    for key, value in overrides.items():
        _set_dotted(data, key, value)
    return data


def _read_metrics(run_dir: str, storage_options: dict) -> dict | None:
    import json

    from streamguard.errors import StorageError
    from streamguard.storage import open_storage

    try:
        return json.loads(open_storage(run_dir, **storage_options).read_bytes("metrics.json"))
    except (StorageError, ValueError):
        return None


def _table(grid, trials_storage: str, storage_options: dict):
    import pandas as pd

    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id")
        row = {"trial_id": trial_id, "run_dir": metrics.get("run_dir") or join(trials_storage, str(trial_id)),
               "error": None if result.error is None else str(result.error)[:500]}
        row.update({f"param:{k}": v for k, v in (result.config or {}).items()})
        row.update({k: metrics.get(k) for k in RESULT_KEYS})
        # The trial's run directory is the source of truth: ASHA may stop a trial at its last
        # epoch boundary while the run still finishes its scoring, and a restored sweep's
        # Tune records can predate the run's end.
        scored = _read_metrics(row["run_dir"], storage_options)
        if scored is not None:
            row.update({k: v for k, v in final_metrics(scored).items() if v is not None})
            row["status"] = "completed"
        elif row["status"] is None:  # no final report: ASHA stopped it early, or it failed
            row["status"] = "error" if result.error is not None else "stopped_early"
        row["finished"] = row["status"] == "completed"
        rows.append(row)
    return pd.DataFrame(rows)


def _best(results, spec: SweepSpec) -> dict | None:
    scored = results[results[spec.metric].notna()] if spec.metric in results else results.iloc[0:0]
    if scored.empty:
        return None
    row = scored.sort_values(spec.metric, ascending=spec.mode == "min").iloc[0]
    return row.to_dict()


def write_outputs(outcome: SweepOutcome, base: Config, spec: SweepSpec) -> None:
    """Table (Parquet + CSV), best config, plots and a summary next to Tune's state."""
    import json

    import yaml

    root, results = outcome.root, outcome.results
    root.path("results.parquet")
    results.to_parquet(root.path("results.parquet"), index=False)
    root.publish("results.parquet")
    root.write_text("results.csv", results.to_csv(index=False))
    summary = {"sweep": spec.name, "metric": spec.metric, "mode": spec.mode, "trials": len(results),
               "finished": int(results["finished"].sum()) if len(results) else 0, "wall_s": round(outcome.wall_s, 1),
               "restored": outcome.restored, "best": None}
    if outcome.best is not None:
        params = {k.removeprefix("param:"): v for k, v in outcome.best.items() if k.startswith("param:")}
        best_cfg = trial_config(base, spec, params, trial_id=f"{spec.name}-best", storage_path=base.run.storage_path)
        header = (f"# Best trial {outcome.best['trial_id']} of sweep {spec.name}: {spec.metric} "
                  f"{outcome.best[spec.metric]:.4f}\n# streamguard train --config best_config.yaml\n")
        root.write_text("best_config.yaml", header + yaml.safe_dump(best_cfg.to_dict(), sort_keys=False))
        summary["best"] = {"trial_id": outcome.best["trial_id"], spec.metric: outcome.best[spec.metric],
                           "params": params, "run_dir": outcome.best.get("run_dir")}
    root.write_text("sweep.json", json.dumps(summary, indent=1, default=str))
    from streamguard.evaluation.sweep_plots import write_sweep_plots

    for rel in write_sweep_plots(results, spec, root.path("plots")):
        root.publish(f"plots/{rel}")



