"""`streamguard` command line. Thin: parse, load the config, call the library, map errors
to one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from streamguard.errors import StreamGuardError

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
) -> None:
    """Train a model. Re-running the same command resumes from the newest valid checkpoint.

    Runs on one process, or under `torchrun --nproc_per_node=N -m streamguard train ...` with DDP.
    """
    from streamguard import config as cfgmod
    from streamguard.metrics import JsonlSink, PrometheusSink
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime
    from streamguard.train.loop import Preempted
    from streamguard.train.loop import train as run_train

    extra = [f"run.storage_path={output}"] if output else []
    cfg = cfgmod.load(preset, [*(overrides or []), *extra], config_file=config)
    run = RunDir(cfg.run.storage_path, cfg.run.name, **cfg.storage.model_dump())
    sinks = []
    if int(os.environ.get("RANK", "0")) == 0:
        sinks.append(JsonlSink(run.path("live_metrics.jsonl")))
        if cfg.metrics.prometheus_port is not None:
            sinks.append(PrometheusSink(cfg.metrics.prometheus_port, {"run": cfg.run.name, "track": cfg.model.track,
                                                                      "trial": "", "rank": "0"}))
    store = run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best)
    rt = LocalRuntime(store, sinks=sinks, device=cfg.train.device)
    try:
        metrics = run_train(cfg, rt, run)
    except Preempted as exc:
        logging.getLogger("streamguard").warning("%s; run the same command again to resume", exc)
        rt.close()
        raise typer.Exit(EXIT_PREEMPTED)
    rt.close()
    if metrics is not None:
        summary = (f"{metrics['split']} F1 {metrics['f1_at_best_threshold']:.3f} at threshold "
                   f"{metrics['best_threshold_by_f1']:.2f} (F1 {metrics['f1_at_0_5']:.3f} at 0.5, "
                   f"ROC-AUC {metrics['roc_auc'] if metrics['roc_auc'] is None else round(metrics['roc_auc'], 3)})")
        typer.echo(f"\nDone: {summary}")
        typer.echo(f"  metrics:     {run.display('metrics.json')}")
        typer.echo(f"  history:     {run.display('history.json')}")
        typer.echo(f"  plots:       {run.display('plots')}")
        typer.echo(f"  checkpoints: {store.storage.uri}")


@app.command()
def evaluate(
    run_dir: str = typer.Argument(..., help="A run directory (local or s3://...) written by `streamguard train`."),
    data: Optional[str] = typer.Option(None, "--data", "-d",
                                       help="Score on this data spec instead of the run's test split, e.g. devign:PATH/test.jsonl.gz"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where to write metrics.json and plots "
                                         "(default: RUN_DIR/eval-<data name>)."),
) -> None:
    """Score a run's best checkpoint and write metrics.json, predictions and plots."""
    from streamguard.evaluation.evaluate_run import evaluate_run

    out, metrics = evaluate_run(run_dir, data=data, output=output)
    typer.echo(f"{metrics['n_samples']} functions: F1 {metrics['f1_at_0_5']:.3f} at 0.5, "
               f"{metrics.get('f1_at_external_threshold') or 0:.3f} at the run's threshold "
               f"{metrics.get('external_threshold')}; accuracy {metrics['accuracy_at_0_5']:.3f}")
    typer.echo(f"  metrics: {out}")


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
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
