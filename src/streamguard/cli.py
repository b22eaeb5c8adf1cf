"""`streamguard` command line. Thin: parse, load the config, call the library, map errors
to one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from streamguard.errors import ConfigError, StreamGuardError

app = typer.Typer(
    help="StreamGuard: train code-vulnerability detectors on a laptop, with torchrun, or on a Ray cluster.\n\n"
    "Settings come from a preset (see `streamguard presets`) plus `section.key=value` overrides.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

EXIT_USAGE, EXIT_PREEMPTED = 2, 143  # 143 = 128 + SIGTERM: orchestrators retry, and the retry resumes

OVERRIDES_HELP = "Config overrides as section.key=value, e.g. train.epochs=3 model.gnn.hidden=128"


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [rank {rank}] %(message)s", datefmt="%H:%M:%S")


@app.command()
def train(
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    preset: str = typer.Option("quickstart", "--preset", "-p", help="Preset name (`streamguard presets` lists them)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file merged over the preset."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="Storage path for runs (local dir or s3://bucket/prefix); sets run.storage_path."),
    ray: bool = typer.Option(False, "--ray", help="Train with Ray Train (DDP over Ray workers, checkpoints on "
                             "run.storage_path, automatic restarts). Needs the `ray` extra."),
    address: Optional[str] = typer.Option(None, "--address", help="With --ray: cluster to join (auto, HOST:PORT); "
                                          "default RAY_ADDRESS, else a local Ray is started. Sets ray.address."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", "-n", min=1,
                                              help="With --ray: number of workers (sets ray.num_workers)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", min=0,
                                                    help="With --ray: GPUs per worker (sets ray.gpus_per_worker)."),
) -> None:
    """Train a model. Re-running the same command resumes from the newest valid checkpoint.

    Runs on one process, under `torchrun --standalone --nproc_per_node=N -m streamguard train ...`
    with DDP, or with --ray on a Ray cluster. SIGTERM checkpoints at the next step and exits 143.
    """
    from streamguard import config as cfgmod

    extra = [f"run.storage_path={output}"] if output else []
    extra += [f"ray.{k}={v}" for k, v in (("address", address), ("num_workers", num_workers),
                                          ("gpus_per_worker", gpus_per_worker)) if v is not None]
    if not ray and (address or num_workers or gpus_per_worker is not None):
        raise ConfigError("--address, --num-workers and --gpus-per-worker need --ray")
    cfg = cfgmod.load(preset, [*(overrides or []), *extra], config_file=config)
    if ray:
        try:
            from streamguard.distributed.train import train_on_ray
        except ImportError as exc:
            raise ConfigError(f"--ray needs Ray ({exc.name} is missing): pip install 'streamguard[ray]'") from None
        outcome = train_on_ray(cfg)
        if outcome.status == "stopped":
            raise typer.Exit(EXIT_PREEMPTED)
        _print_summary(outcome.metrics, outcome.run)
        return
    _train_local(cfg)


def _train_local(cfg) -> None:
    from streamguard.metrics import JsonlSink, PrometheusSink
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime, ProgressMarker
    from streamguard.train.loop import Preempted
    from streamguard.train.loop import train as run_train

    run = RunDir(cfg.run.storage_path, cfg.run.name, **cfg.storage.model_dump())
    sinks = []
    if int(os.environ.get("RANK", "0")) == 0:
        sinks.append(JsonlSink(run.path("live_metrics.jsonl")))
        if cfg.metrics.prometheus_port is not None:
            sinks.append(PrometheusSink(cfg.metrics.prometheus_port, {"run": cfg.run.name, "track": cfg.model.track,
                                                                      "trial": "", "rank": "0"}))
    store = run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best)
    rt = LocalRuntime(store, sinks=sinks, device=cfg.train.device, progress=ProgressMarker(run.storage))
    try:
        metrics = run_train(cfg, rt, run)
    except Preempted as exc:
        logging.getLogger("streamguard").warning("%s; run the same command again to resume", exc)
        rt.close()
        raise typer.Exit(EXIT_PREEMPTED)
    rt.close()
    if metrics is not None:
        _print_summary(metrics, run)


def _print_summary(metrics: dict, run) -> None:
    # Lead with the threshold picked on validation: the best threshold on the scored split
    # itself is an optimistic number, shown second and named as such.
    auc = metrics["roc_auc"] if metrics["roc_auc"] is None else round(metrics["roc_auc"], 3)
    best = f"{metrics['f1_at_best_threshold']:.3f} at this split's best threshold {metrics['best_threshold_by_f1']:.2f}"
    if metrics.get("external_threshold") is not None and metrics.get("f1_at_external_threshold") is not None:
        summary = (f"{metrics['split']} F1 {metrics['f1_at_external_threshold']:.3f} at the validation threshold "
                   f"{metrics['external_threshold']:.2f} ({metrics['f1_at_0_5']:.3f} at 0.5, {best}), ROC-AUC {auc}")
    else:
        summary = f"{metrics['split']} F1 {metrics['f1_at_0_5']:.3f} at 0.5 ({best}), ROC-AUC {auc}"
    typer.echo(f"\nDone: {summary}")
    typer.echo(f"  metrics:     {run.display('metrics.json')}")
    typer.echo(f"  history:     {run.display('history.json')}")
    typer.echo(f"  plots:       {run.display('plots')}")
    typer.echo(f"  checkpoints: {run.display('checkpoints')}")


@app.command()
def tune(
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP + " (applied to every trial)",
                                                    show_default=False),
    preset: str = typer.Option("quickstart", "--preset", "-p", help="Preset every trial starts from."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file merged over the preset "
                                          "(e.g. a sweep's best_config.yaml for a seed sweep)."),
    sweep: Optional[str] = typer.Option(None, "--sweep", "-s", help="Sweep YAML: name, metric, num_samples, "
                                        "search (dotted key: loguniform(a, b) | uniform | quniform | randint | "
                                        "choice([...])), overrides, scheduler. Or a shipped sweep name."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Instead of --sweep: run the config over N "
                                        "seeds (run.seed, run.seed+1, ...) for an ensemble."),
    name: Optional[str] = typer.Option(None, "--name", help="Sweep name (default: the sweep file's; "
                                       "<run.name>-seeds for --seeds). The same name restores."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (sets ray.address)."),
    fresh: bool = typer.Option(False, "--fresh", help="Do not restore an existing sweep of this name; fail instead."),
) -> None:
    """Hyperparameter or seed sweep with Ray Tune: Optuna TPE + ASHA, one Ray Train run per trial.

    Writes results.parquet/.csv, best_config.yaml, plots/ and TensorBoard events under
    <run.storage_path>/<sweep name>. Starting the same command again restores the sweep.
    """
    from streamguard import config as cfgmod
    from streamguard.sweep import load_sweep, seed_sweep

    if (sweep is None) == (seeds is None):
        raise ConfigError("pass exactly one of --sweep FILE (a search) or --seeds N (a seed sweep)")
    extra = [f"ray.address={address}"] if address else []
    base = cfgmod.load(preset, [*(overrides or []), *extra], config_file=config)
    spec = (load_sweep(sweep, name=name) if sweep else
            seed_sweep(name or f"{base.run.name}-seeds", seeds, first_seed=base.run.seed))
    try:
        from streamguard.distributed.tune import run_sweep
    except ImportError as exc:
        raise ConfigError(f"sweeps need Ray Tune and Optuna ({exc.name} is missing): "
                          "pip install 'streamguard[ray]'") from None
    if fresh:
        from streamguard.rundir import RunDir

        if RunDir(base.run.storage_path, spec.name, **base.storage.model_dump()).storage.list():
            raise ConfigError(f"sweep {spec.name!r} already exists under {base.run.storage_path}; "
                              "drop --fresh to restore it, or pick another --name")
    out = run_sweep(base, spec, restore=not fresh)
    typer.echo(f"\nSweep {spec.name}: {len(out.results)} trials ({int(out.results['finished'].sum())} finished) "
               f"in {out.wall_s:.0f} s{' (restored)' if out.restored else ''}")
    if out.best is not None:
        typer.echo(f"  best: trial {out.best['trial_id']} {spec.metric} {out.best[spec.metric]:.4f}")
    typer.echo(f"  results:     {out.root.display('results.csv')}")
    typer.echo(f"  best config: {out.root.display('best_config.yaml')}")
    typer.echo(f"  plots:       {out.root.display('plots')}")
    typer.echo(f"  TensorBoard: tensorboard --logdir {out.root.uri}")


data_app = typer.Typer(help="Prepare datasets once into Parquet shards with a manifest, and inspect them.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    overrides: Optional[list[str]] = typer.Argument(None, help="Data overrides as data.key=value, e.g. data.split=project",
                                                    show_default=False),
    source: Optional[str] = typer.Option(None, "--source", "-s", help="Data spec: devign:PATH, juliet:PATH, bigvul:PATH, "
                                         "dir:PATH, hf:NAME, synthetic (PATH may be s3://). Default: the preset's, else synthetic."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory (local or s3://bucket/prefix)."),
    valid_source: Optional[str] = typer.Option(None, "--valid-source", help="Separate validation data spec."),
    test_source: Optional[str] = typer.Option(None, "--test-source", help="Separate test data spec."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Preset whose data section is the starting "
                                         "point; default: the library defaults (`streamguard presets --keys`). "
                                         "Pass the preset you will train with, e.g. --preset quickstart (it caps "
                                         "graphs at 1,024 nodes)."),
    workers: int = typer.Option(0, "--workers", "-w", help="Local worker processes (0: one per CPU core)."),
    ray: bool = typer.Option(False, "--ray", help="Process with Ray Data (joins RAY_ADDRESS, else starts a local Ray)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the output is up to date."),
) -> None:
    """Parse functions into AST/NCS/CFG/DFG graphs and token windows, once.

    Re-running with the same sources, settings and version does nothing (cached by checksum).
    """
    from streamguard import config as cfgmod
    from streamguard.data.prepare import PrepareSettings, prepare

    extra = [f"data.{k}={v}" for k, v in (("source", source), ("valid_source", valid_source),
                                          ("test_source", test_source)) if v]
    cfg = cfgmod.load(preset, [*(overrides or []), *extra])
    settings = PrepareSettings.from_data_config(cfg.data, cfg.run.seed)
    manifest = prepare(settings, out, workers=workers or cfg.data.workers, force=force, use_ray=ray,
                       storage_options=cfg.storage.model_dump())
    _print_manifest(manifest)
    typer.echo(f"\nshards and manifest: {out}")


@data_app.command("stats")
def data_stats(directory: str = typer.Argument(..., help="A prepared dataset directory (local or s3://).")) -> None:
    """Print a prepared dataset's manifest as tables."""
    from streamguard.data.shards import read_manifest
    from streamguard.storage import open_storage

    _print_manifest(read_manifest(open_storage(directory)))


@data_app.command("augment")
def data_augment(
    directory: str = typer.Argument(..., help="A prepared dataset (local dir or s3://), from `data prepare`."),
    out: str = typer.Option(..., "--out", "-o", help="Where to write the augmented dataset (local or s3://)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Transformer encoder: codebert, graphcodebert, unixcoder, "
                                "a hub id, a local directory or an s3:// prefix (offline-first)."),
    mode: str = typer.Option("both", "--mode", help="Features to add: cls (CLS vector per function), leaf (token "
                             "vectors on leaf nodes) or both."),
    leaf_dim: int = typer.Option(32, "--leaf-dim", min=1, help="Size of the projected leaf vectors."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Functions per encoder batch."),
    max_tokens: int = typer.Option(512, "--max-tokens", min=8, help="Encoder window (capped by its position limit)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Add transformer encoder features (for model.gnn.encoder=cls|leaf) to prepared shards, once."""
    from streamguard.data.augment import augment

    manifest = augment(directory, out, encoder=encoder, mode=mode, leaf_dim=leaf_dim, batch_size=batch_size,
                       max_tokens=max_tokens, device=device)
    a = manifest["augment"]
    typer.echo(f"added {', '.join(a['columns'])} from {encoder} (cls {a['cls_dim']}, leaf {a['leaf_dim']}) "
               f"in {a['seconds']}s\ntrain with: data.source=prepared:{out} model.gnn.encoder="
               f"{'cls' if a['cls_dim'] else 'leaf'}")


def _print_manifest(m: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    c = m["counts"]
    t = Table(title=f"splits ({c['kept']} kept of {c['input']} input functions)")
    for col in ("split", "functions", "vulnerable", "safe"):
        t.add_column(col, justify="right" if col != "split" else "left")
    for name, v in c["per_split"].items():
        t.add_row(name, str(v["n"]), str(v["positive"]), str(v["negative"]))
    console.print(t)
    t = Table(title="not kept, by reason")
    t.add_column("reason")
    t.add_column("functions", justify="right")
    for reason, n in {**{f"dedup:{k}": v for k, v in c["dedup"].items()}, **c["skipped"]}.items():
        t.add_row(reason, str(n))
    console.print(t)
    t = Table(title="parse tiers")
    t.add_column("tier")
    t.add_column("functions", justify="right")
    t.add_column("rate", justify="right")
    for tier, n in m["tiers"].items():
        t.add_row(tier, str(n), f"{m['tier_rates'][tier]:.1%}")
    console.print(t)
    t = Table(title="graph size")
    for col in ("", "mean", "p50", "p95", "max"):
        t.add_column(col, justify="right")
    for what, v in m["graph_stats"].items():
        t.add_row(what, *(str(v[k]) for k in ("mean", "p50", "p95", "max")))
    console.print(t)
    b = m["batch_size"]
    console.print(f"recommended batch size: {b['recommended']} graphs for {b['memory_budget_mb']} MiB "
                  f"(hidden {b['hidden']}, {b['layers']} layers, sized on P95 graphs); "
                  f"tokenizer: {(m.get('tokenizer') or {}).get('name')}; windows: {m['token_windows']}")


@app.command()
def evaluate(
    run_dir: str = typer.Argument(..., help="A run directory (local or s3://...) written by `streamguard train`."),
    data: Optional[str] = typer.Option(None, "--data", "-d",
                                       help="Score on this data spec instead of the run's test split, e.g. devign:PATH/test.jsonl.gz"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where to write metrics.json and plots "
                                         "(default: RUN_DIR/eval-<data name>)."),
) -> None:
    """Score a run's best checkpoint and write metrics.json, predictions and plots.

    Also: bootstrap 95% intervals (accuracy, F1, ROC-AUC), calibration (ECE, reliability
    diagram), a per-project and per-CWE breakdown where the data has them, and report.md /
    report.html (plots embedded).
    """
    from streamguard.evaluation.evaluate_run import evaluate_run

    out, metrics = evaluate_run(run_dir, data=data, output=output)
    typer.echo(f"{metrics['n_samples']} functions: F1 {metrics['f1_at_0_5']:.3f} at 0.5, "
               f"{metrics.get('f1_at_external_threshold') or 0:.3f} at the run's threshold "
               f"{metrics.get('external_threshold')}; accuracy {metrics['accuracy_at_0_5']:.3f}")
    typer.echo(f"  metrics: {out}")
    typer.echo(f"  report:  {out.replace('metrics.json', 'report.html')} (and report.md, breakdown.json, "
               "calibration.json)")


@app.command()
def presets(keys: bool = typer.Option(False, "--keys", help="Also list every config key with its default and meaning.")) -> None:
    """List the shipped presets and tracks (and, with --keys, every config key)."""
    from importlib import resources

    from streamguard.config import describe, preset_names
    from streamguard.registry import known_tracks

    for name in preset_names():
        text = (resources.files("streamguard") / "presets" / f"{name}.yaml").read_text()
        first = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
        typer.echo(f"{name:24s} {first}")
    typer.echo(f"\ntracks: {', '.join(known_tracks())}")
    if keys:
        typer.echo("")
        for key, default, doc in describe():
            typer.echo(f"{key:34s} {default:12s} {doc}")


@app.command()
def submit(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    preset: str = typer.Option(..., "--preset", "-p", help="Preset to train (`streamguard presets` lists them)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file merged over the preset (as for train)."),
    values: list[Path] | None = typer.Option(
        None, "--values", "-f", help="Helm chart values file(s) for the job's cluster: image, worker groups, spot "
        "settings, storage (helm/streamguard/values.yaml and examples/). Repeatable; later files win."),
    namespace: str | None = typer.Option(None, "--namespace", "-n",
                                            help="Namespace (default: the kubeconfig context's, else `default`)."),
    release: str = typer.Option("streamguard", "--release", help="Helm release installed in the namespace: the job "
                                "uses its ServiceAccount and carries its labels (so its PodMonitor scrapes the job)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow the job's status and stream its logs until it ends."),
    replace: bool = typer.Option(False, "--replace", help="Delete an existing job of the same run first (the run "
                                 "resumes from its newest checkpoint)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the ConfigMap and RayJob YAML; contact no cluster."),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context (default: the current one)."),
) -> None:
    """Train a preset on Kubernetes: create a KubeRay RayJob, with a cluster of its own, and its run config.

    Runs ray_jobs/train.py with the config resolved here, on a cluster built from the chart's values.

    Needs the KubeRay operator in the cluster; see docs/kubernetes.md.
    """
    from streamguard.deploy import rayjob as rj

    vals = rj.load_values(values or [])
    cfg = rj.resolve_config(preset, vals, overrides or [], config_file=config)
    job, cm = rj.build(cfg, preset, vals, namespace=namespace or "default", release=release)
    if dry_run:
        typer.echo(rj.to_yaml(cm, job), nl=False)
        return
    from streamguard.deploy import submit as sub

    cluster = sub.connect(namespace, kubeconfig, context)
    name = job["metadata"]["name"]
    sub.create(cluster, job, cm, replace=replace, run_name=cfg.run.name,
               service_account=rj.service_account_name(release, vals))
    typer.echo(f"created RayJob {name} in namespace {cluster.namespace} (run {cfg.run.name!r}, preset {preset}, "
               f"storage {cfg.run.storage_path})")
    if not watch:
        typer.echo(f"  follow it: kubectl -n {cluster.namespace} get rayjob {name} -w   (or add --watch)")
        return
    ok = sub.watch(cluster, name, echo=typer.echo)
    typer.echo(f"RayJob {name} {'succeeded' if ok else 'failed'}")
    if not ok:
        raise typer.Exit(1)


@app.command()
def ensemble(
    run_dirs: list[str] | None = typer.Argument(None, metavar="RUN_DIR...", show_default=False,
                                                   help="Run directories (local or s3://) to average, e.g. the seeds "
                                                   "of one config."),
    runs: bool = typer.Option(False, "--runs", help="Read the arguments as run directories: "
                              "`--runs RUN_DIR RUN_DIR...` (the default when RUN_DIRs are given)."),
    sweep: str | None = typer.Option(None, "--sweep", help="A sweep directory: its results.parquet `run_dir` "
                                        "column, else every DIR/*/ with a metrics.json."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (local or s3://); default "
                                      "SWEEP/ensemble, or ensemble-<hash> beside the first run."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots and embed them in the report."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=1, help="Bootstrap replicates for the 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (same seed, same intervals)."),
) -> None:
    """Average the probabilities of several runs (seeds, or a sweep's trials) and score the average.

    Members must have scored the same validation and test samples. The threshold is picked on
    the averaged validation probabilities (best F1 over 0.30-0.70) and applied to the averaged
    test probabilities; ensemble_metrics.json has the keys of metrics.json. Also writes the
    per-member table (mean ± std against the ensemble; JSON, CSV, Markdown), bootstrap
    intervals, calibration, plots and report.md/report.html.
    """
    from rich.console import Console
    from rich.table import Table

    from streamguard.evaluation.ensemble import build_ensemble, table_rows

    if runs and not run_dirs:
        raise ConfigError("--runs needs run directories: streamguard ensemble --runs RUN_DIR RUN_DIR ...")
    result = build_ensemble(run_dirs or None, sweep=sweep, out=out, plots=plots, n_boot=bootstrap, seed=seed)
    names = [m["name"] for m in result.table["members"]]
    t = Table(title=f"{len(names)} members vs their ensemble ({result.metrics['split']} split)")
    for col in ("metric", *names, "mean ± std", "ensemble", "gain"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for row in table_rows(result.table):
        t.add_row(*row)
    Console().print(t)
    m, ci = result.metrics, result.metrics["confidence_intervals"]["metrics"]["f1"]
    typer.echo(f"ensemble: F1 {m['f1_at_external_threshold']:.3f} [95% CI {ci['low']:.3f}, {ci['high']:.3f}] at "
               f"threshold {m['external_threshold']:.2f} (picked on validation); ROC-AUC "
               f"{'n/a' if m['roc_auc'] is None else format(m['roc_auc'], '.3f')}")
    typer.echo(f"  metrics: {result.out}/ensemble_metrics.json\n  report:  {result.out}/report.html")


@app.command()
def compare(
    a: str = typer.Argument(..., help="Model A: a run, evaluation or ensemble directory (local or s3://)."),
    b: str = typer.Argument(..., help="Model B, scored on the same samples."),
    threshold: float | None = typer.Option(None, "--threshold", "-t", min=0.0, max=1.0,
                                              help="Threshold for both (default: each one's validation threshold)."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=1, help="Paired bootstrap replicates."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (same seed, same result)."),
    stratified: bool = typer.Option(True, "--stratified/--unstratified",
                                    help="Resample positives and negatives separately (keeps class counts)."),
    out: str | None = typer.Option(None, "--out", "-o", help="JSON output file (local or s3://); default "
                                      "compare-A-vs-B.json in the current directory."),
) -> None:
    """Compare two models on the same test samples (paired bootstrap and McNemar's test).

    Prints each model's bootstrap 95% intervals, the paired bootstrap of B - A (accuracy, F1,
    ROC-AUC) and McNemar's test on which samples each gets right; writes it all as JSON.
    """
    from streamguard.evaluation.compare import compare as run_compare
    from streamguard.evaluation.compare import default_out, print_table, write_json

    result = run_compare(a, b, threshold=threshold, n_boot=bootstrap, seed=seed, stratified=stratified)
    print_table(result)
    path = out or default_out(result)
    write_json(path, result)
    typer.echo(f"  json: {path}")


@app.command()
def export(
    run_dir: str = typer.Argument(..., help="A finished run directory (local or s3://)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Bundle directory to create (local)."),
    to: str | None = typer.Option(None, "--to", help="Publish as the next version of a model: "
                                  "s3://bucket/models/NAME (or a local directory); keeps NAME/index.json."),
    force: bool = typer.Option(False, "--force", help="Replace an existing, non-empty --out directory."),
) -> None:
    """Write an inference bundle of a finished run, for `streamguard predict`.

    The bundle holds the best checkpoint as safetensors, the resolved config, the tokenizer
    (and the transformer backbone), the preprocessing version and settings, the threshold
    picked on validation, and a manifest with every file's sha256 (checked on load). With
    --to it is also published as version vNNNN of a model (predict NAME@vNNNN or NAME@latest).
    """
    import tempfile

    from streamguard.inference.bundle import export_bundle

    if not out and not to:
        raise ConfigError("give --out DIR (a local bundle) and/or --to s3://bucket/models/NAME (a published version)")
    target = out or tempfile.mkdtemp(prefix="streamguard-bundle-")
    meta = export_bundle(run_dir, target, force=force or not out)
    typer.echo(f"exported {meta['track']} run {meta['run']['name']!r} ({meta['run']['checkpoint']}, "
               f"{meta['run']['weights']} weights, threshold {meta['threshold']:.2f})" + (f" to {out}" if out else ""))
    if to:
        import shutil

        from streamguard.inference.model_registry import publish

        entry = publish(target, to)
        if not out:
            shutil.rmtree(target, ignore_errors=True)
        typer.echo(f"published {entry['uri']} (sha256 {entry['sha256'][:12]}...)\n"
                   f"  use it: streamguard predict {to.rstrip('/')}@{entry['version']} path/to/src   (or @latest)")
    else:
        typer.echo(f"  use it: streamguard predict {out} path/to/src")


@app.command()
def predict(
    bundle: str = typer.Argument(..., help="An inference bundle directory from `streamguard export`, or a "
                                 "published model: s3://bucket/models/NAME@VERSION or NAME@latest."),
    paths: list[str] = typer.Argument(..., help="C/C++ source files or directories (searched recursively)."),
    fmt: str = typer.Option("table", "--format", "-f", help="Output: table (rich) or json."),
    lang: str | None = typer.Option(None, "--lang", help="Force the language (c or cpp) instead of the extension."),
    max_file_bytes: int = typer.Option(5_000_000, "--max-file-bytes", min=1, help="Skip larger files (noted)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    fail_on_vulnerable: bool = typer.Option(False, "--fail-on-vulnerable",
                                            help="Exit 1 when any function is predicted vulnerable (for CI)."),
) -> None:
    """Score every function in C/C++ source files with an exported bundle.

    Prints file, function, line range, P(vulnerable) and the verdict at the bundle's threshold.
    Files that are not UTF-8 are decoded with replacement characters (flagged non_utf8); broken
    code is still scored (parse tiers partial/tokens, `recovered` functions).
    """
    import json as jsonlib

    from streamguard.inference.bundle import load_bundle
    from streamguard.inference.predict import as_json, predict_files, print_table

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format must be table or json, got {fmt!r}")
    if lang is not None and lang not in ("c", "cpp"):
        raise ConfigError(f"--lang must be c or cpp, got {lang!r}")
    if device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"--device must be cpu, cuda or auto, got {device!r}")
    from streamguard.inference.model_registry import is_registry_ref, resolve

    loaded = load_bundle(resolve(bundle) if is_registry_ref(bundle) else bundle, device=device)
    results, reports = predict_files(loaded, paths, lang=lang, max_file_bytes=max_file_bytes,
                                     progress=fmt == "table" and sys.stderr.isatty())
    if fmt == "json":
        typer.echo(jsonlib.dumps(as_json(loaded, results, reports), indent=2))
    else:
        print_table(loaded, results, reports)
    if fail_on_vulnerable and any(r.verdict == "vulnerable" for r in results):
        raise typer.Exit(1)


def main() -> None:
    _setup_logging()
    try:
        # Non-standalone click returns the code of a typer.Exit instead of raising it.
        code = app(standalone_mode=False)
    except StreamGuardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        # Typer >= 0.2x vendors its own click (typer._click), so match click's interface
        # rather than the class of whichever click is installed.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
