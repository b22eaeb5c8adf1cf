"""PNG plots of a sweep, drawn by Optuna's matplotlib visualisations from the results table:
optimisation history, parameter importances (fANOVA) and parallel coordinates.

The table is the source of truth (it survives restores and merges trials from several
drivers), so an in-memory Optuna study is rebuilt from it: one completed trial per row that
reported the metric, with the sweep's distributions.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def _distribution(domain, values):
    import optuna.distributions as od

    kind, args = domain.kind, domain.args
    if kind == "choice":
        return od.CategoricalDistribution(list(args[0]))
    if kind == "randint":
        return od.IntDistribution(args[0], args[1] - 1)
    if kind in ("uniform", "quniform"):
        return od.FloatDistribution(args[0], args[1])
    return od.FloatDistribution(args[0], args[1], log=True)


def study_from_results(results, spec):
    """An Optuna study with the sweep's scored trials (None if there are none)."""
    import optuna

    domains = spec.domains()
    scored = results[results[spec.metric].notna()] if spec.metric in results else results.iloc[0:0]
    if scored.empty or not domains:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for _, row in scored.iterrows():
        params, dists = {}, {}
        for key, domain in domains.items():
            value = row.get(f"param:{key}")
            if value is None:
                continue
            value = value.item() if hasattr(value, "item") else value
            params[key], dists[key] = value, _distribution(domain, value)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row[spec.metric])))
    return study


def write_sweep_plots(results, spec, out_dir: str | Path) -> list[str]:
    """Writes the PNGs it can (importances need 2+ trials and a varying parameter); returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    study = study_from_results(results, spec)
    if study is None:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    plots = {"optimization_history.png": ovm.plot_optimization_history,
             "parallel_coordinate.png": ovm.plot_parallel_coordinate,
             "param_importances.png": ovm.plot_param_importances}
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
                ax = plot(study)
            fig = (ax[0] if hasattr(ax, "__len__") else ax).figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            written.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of one trial
            log.info("sweep plot %s skipped: %s", name, exc)
    return written
