"""Sweep specs: a search space written as dotted overrides of the one config.

    # sweeps/quickstart.yaml
    name: quickstart-sweep
    metric: val_f1
    num_samples: 8
    search:
      optim.lr: loguniform(1e-4, 1e-2)
      model.gnn.hidden: choice([32, 64, 128])
    overrides:
      train.epochs: 6

Pure logic, no Ray: parsing, validation against the config (every key and every bound is
checked before a cluster is touched), and the per-trial config. `distributed/tune.py` maps
the domains onto `ray.tune` and runs the sweep.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streamguard import config as cfgmod
from streamguard.errors import ConfigError

DOMAINS = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "choice")
_CALL = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Domain:
    kind: str
    args: tuple

    def sample_points(self) -> list:
        """Values at the edges of the domain, to validate against the config up front."""
        if self.kind == "choice":
            return list(self.args[0])
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return [self.args[0], self.args[1]]

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(map(repr, self.args))})"


def parse_domain(key: str, text: Any) -> Domain:
    """`loguniform(1e-5, 1e-3)` -> Domain. Arguments are Python literals (no eval)."""
    if not isinstance(text, str) or not (m := _CALL.match(text)):
        raise ConfigError(f"sweep search {key!r}: expected one of {', '.join(d + '(...)' for d in DOMAINS)}, "
                          f"got {text!r}")
    kind, raw = m.group(1), m.group(2)
    if kind not in DOMAINS:
        raise ConfigError(f"sweep search {key!r}: unknown domain {kind!r}; use one of {', '.join(DOMAINS)}")
    try:
        args = ast.literal_eval(f"({raw},)")
    except (ValueError, SyntaxError):
        raise ConfigError(f"sweep search {key!r}: arguments of {kind}() must be literals, got {raw!r}") from None
    if kind == "choice":
        if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
            raise ConfigError(f"sweep search {key!r}: choice() takes one non-empty list, e.g. choice([32, 64])")
        return Domain(kind, (list(args[0]),))
    want = 3 if kind.startswith("q") else 2
    if len(args) != want or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"sweep search {key!r}: {kind}() takes {want} numbers, got {raw!r}")
    low, high = args[0], args[1]
    if not low < high:
        raise ConfigError(f"sweep search {key!r}: {kind}() needs low < high, got {low} and {high}")
    if "log" in kind and low <= 0:
        raise ConfigError(f"sweep search {key!r}: {kind}() needs a positive lower bound, got {low}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"sweep search {key!r}: randint() takes integers (upper bound exclusive)")
    return Domain(kind, tuple(args))


class SchedulerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    type: Literal["asha", "fifo"] = "asha"
    """`asha` stops weak trials early on the metric; `fifo` runs every trial to the end."""
    grace_period: int = Field(1, ge=1)
    """Epochs every trial runs before ASHA may stop it."""
    reduction_factor: float = Field(2.0, gt=1)
    """ASHA keeps the top 1/reduction_factor of trials at each rung."""


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    """Stable sweep name: its directory is `<run.storage_path>/<name>`; the same name restores."""
    metric: str = "val_f1"
    """Reported metric to optimise: validation F1 of the vulnerable class (`val_f1`) or `val_loss`."""
    mode: Literal["max", "min"] = "max"
    """Maximise or minimise the metric."""
    num_samples: int = Field(8, ge=1)
    """Trials to run (for a seed sweep: one per seed)."""
    seed: int = 0
    """Seed of the Optuna TPE sampler."""
    max_concurrent_trials: int | None = Field(None, ge=1)
    """Cap on trials running at once; the default (and the ceiling) comes from the cluster's resources."""
    search: dict[str, Any] = Field(default_factory=dict)
    """Dotted config key -> domain: uniform(a, b), loguniform(a, b), quniform(a, b, q), qloguniform(a, b, q), randint(a, b), choice([...])."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Dotted config key -> value, fixed for every trial."""
    scheduler: SchedulerSpec = SchedulerSpec()
    """Early stopping of trials."""
    max_failures: int = Field(2, ge=-1)
    """Times Tune retries a failed trial (on top of Ray Train's own worker retries)."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in ("val_f1", "val_loss"):
            raise ValueError(f"metric must be val_f1 or val_loss (reported every epoch), got {value!r}")
        return value

    def domains(self) -> dict[str, Domain]:
        return {key: parse_domain(key, text) for key, text in self.search.items()}


def builtin_sweeps() -> list[str]:
    folder = resources.files("streamguard") / "sweeps"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_sweep(path_or_name: str | Path, *, name: str | None = None) -> SweepSpec:
    """A sweep YAML file, or the name of a shipped one (`streamguard tune --help` lists them)."""
    path = Path(path_or_name)
    if path.is_file():
        text, what = path.read_text(), f"sweep file {str(path)!r}"
    elif str(path_or_name) in builtin_sweeps():
        text = (resources.files("streamguard") / "sweeps" / f"{path_or_name}.yaml").read_text()
        what = f"sweep {path_or_name!r}"
    else:
        raise ConfigError(f"no sweep file {str(path_or_name)!r}; pass a YAML file or one of: {', '.join(builtin_sweeps())}")
    data = cfgmod._yaml_mapping(text, what)
    if name:
        data["name"] = name
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{what}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    spec.domains()  # parse errors now, not on the cluster
    return spec


def seed_sweep(name: str, seeds: int, *, first_seed: int = 0) -> SweepSpec:
    """N runs of one config that differ only in `run.seed` (for ensembles and statistics);
    the data split stays the first seed's, so every run scores the same samples."""
    return SweepSpec(name=name, num_samples=seeds, search={"run.seed": f"choice({list(range(first_seed, first_seed + seeds))})"},
                     overrides={"data.split_seed": first_seed},  # same split for every seed: comparable runs
                     scheduler=SchedulerSpec(type="fifo"))


def trial_config(base: cfgmod.Config, spec: SweepSpec, params: dict[str, Any], *, trial_id: str,
                 storage_path: str) -> cfgmod.Config:
    """The config of one trial: base, then the sweep's fixed overrides, then the sampled
    params; its run lives at `<storage_path>/<sweep>/runs/<trial id>`."""
    data = base.to_dict()
    for key, value in {**spec.overrides, **params}.items():
        cfgmod._set_dotted(data, key, value)
    data["run"]["name"] = trial_id
    data["run"]["storage_path"] = storage_path
    return cfgmod.Config.from_dict(data)


def validate(base: cfgmod.Config, spec: SweepSpec) -> None:
    """Every searched key and every domain edge must make a valid config."""
    for key, value in spec.overrides.items():
        _check(base, {key: value}, f"sweep override {key}={value!r}")
    for key, domain in spec.domains().items():
        for value in domain.sample_points():
            _check(base, {**spec.overrides, key: value}, f"sweep search {key}: {domain} (at {value!r})")


def _check(base: cfgmod.Config, values: dict[str, Any], what: str) -> None:
    data = base.to_dict()
    for key, value in values.items():
        cfgmod._set_dotted(data, key, value)
    try:
        cfgmod.Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{what} is not a valid config: {exc}") from None
