"""THE StreamGuard config: one typed, frozen tree, loaded from a YAML preset plus
`section.key=value` overrides.

Every entrypoint (CLI, torchrun, Ray jobs, Helm values, Tune search spaces) walks a value
the same way: override -> preset -> `load()` (validates, fails loudly) -> `Config` ->
the builder that uses it. Builders turn sections into plain arguments; modules never
receive the whole config.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamguard.errors import ConfigError


class _Section(BaseModel):
    # extra="forbid" makes a typo a loud error instead of a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RunConfig(_Section):
    name: str = Field("quickstart", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    """Stable run name. Re-running with the same name resumes; never a timestamp."""
    storage_path: str = "runs"
    """Where runs live: a local directory or `s3://bucket/prefix`. The run root is `<storage_path>/<name>`."""
    seed: int = 0
    """Seed for Python, NumPy, torch, the data split and the sampler."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (slower; for exact resume comparisons)."""


class DataConfig(_Section):
    source: str = "synthetic"
    """Training data spec: `synthetic`, `devign:PATH`, `juliet:PATH`, `bigvul:PATH`, `dir:PATH`, `hf:NAME`, or `prepared:DIR` (shards from `streamguard data prepare`). PATH may be s3://."""
    valid_source: str | None = None
    """Optional separate validation data spec; otherwise carved out of `source` by `valid_fraction`."""
    test_source: str | None = None
    """Optional separate test data spec; otherwise carved out of `source` by `test_fraction`."""
    synthetic_size: int = Field(2400, ge=20, le=1_000_000)
    """Number of functions the embedded generator makes when `source` is `synthetic`."""
    split_seed: int | None = None
    """Seed of the train/valid/test split and the K folds; default: `run.seed`. Pin it to score runs of different seeds on the same samples (seed sweeps pin it; ensembles and `compare` need it)."""
    split: Literal["random", "project", "time"] = "random"
    """Leakage-safe split of `source`: by text group at random, whole projects, or by date (oldest train, newest test)."""
    valid_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    """Share held out for validation when no `valid_source` is given."""
    test_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    """Share held out for the final test when no `test_source` is given."""
    folds: int = Field(5, ge=2, le=20)
    """K of the K-fold column over the training split (out-of-fold predictions for fusion)."""
    dedup: bool = True
    """Drop repeated functions (normalised text hash), keeping the first."""
    drop_conflicting: bool = True
    """Also drop texts that appear with both labels (Devign has 60)."""
    limit: int | None = Field(None, ge=1)
    """Read at most this many records per source (smoke runs on big datasets)."""
    max_nodes: int = Field(4000, ge=16)
    """AST nodes kept per function; larger graphs are truncated in breadth-first order (counted)."""
    max_source_bytes: int = Field(1_000_000, ge=256)
    """Functions longer than this are handled by `oversize` (counted in the manifest)."""
    oversize: Literal["skip", "truncate"] = "skip"
    """Policy for functions over `max_source_bytes`."""
    token_buckets: int = Field(4096, ge=16)
    """Hash buckets for leaf-token text features (identifiers, literals, operators)."""
    tokenizer: str | None = "builtin:c-bpe"
    """Fast Hugging Face tokenizer for token windows: `builtin:c-bpe`, a local directory, a hub id, an alias (`codebert`), an s3:// prefix, or `backbone` (= model.transformer.backbone, what the transformer track needs, and its default for that track); null disables tokens."""
    max_tokens: int = Field(512, ge=8, le=4096)
    """Token window length including CLS/SEP; long functions keep the window around risky API calls."""
    prepared_dir: str | None = None
    """Where prepared shards are cached (local or s3://); default: ~/.cache/streamguard/prepared/<settings hash>."""
    rows_per_shard: int = Field(4096, ge=16)
    """Functions per Parquet shard."""
    workers: int = Field(0, ge=0)
    """Processes for preparing data (0: one per CPU core)."""
    holdout_fold: int | None = Field(None, ge=0)
    """Train without training fold k and score it at the end (`fold_predictions.json`): the out-of-fold runs behind fusion."""


EdgeKind = Literal["ast", "ncs", "cfg", "dfg"]


class GNNConfig(_Section):
    conv: Literal["gcn", "sage", "gat", "ggnn", "rgcn"] = "sage"
    """Message-passing layer: `gcn`, `sage` (GraphSAGE), `gat` (GATv2), `ggnn` (GatedGraphConv) or `rgcn` (relation-aware: one weight per edge kind and direction)."""
    hidden: int = Field(128, ge=4, le=4096)
    """Hidden size of embeddings and graph layers."""
    layers: int = Field(3, ge=1, le=16)
    """Number of message-passing layers (GGNN: propagation steps of its one gated layer)."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout after each layer and in the head."""
    heads: int = Field(4, ge=1, le=32)
    """Attention heads of `gat` (hidden must be divisible by it)."""
    edge_kinds: list[EdgeKind] = Field(default_factory=lambda: ["ast", "ncs", "cfg", "dfg"], min_length=1)
    """Edge kinds the layers see (both directions each): `ast`, `ncs` (next leaf), `cfg`, `dfg`."""
    edge_types: bool = False
    """Edge-type embeddings (kind x direction) as edge features of `gat`; `rgcn` is relation-aware by itself."""
    pooling: Literal["meanmax", "attention"] = "meanmax"
    """Graph readout: mean and max pooling concatenated, or gated attention pooling."""
    encoder: Literal["none", "cls", "leaf"] = "none"
    """Encoder features from `streamguard data augment`: `cls` concatenates the function's transformer CLS vector after pooling; `leaf` adds projected token vectors to leaf nodes."""

    @model_validator(mode="after")
    def _check(self) -> "GNNConfig":
        if self.conv == "gat" and self.hidden % self.heads:
            raise ValueError(f"conv=gat needs hidden ({self.hidden}) divisible by heads ({self.heads})")
        if self.edge_types and self.conv not in ("gat", "rgcn"):
            raise ValueError(f"edge_types works with conv=gat (edge features) or rgcn (relations), not {self.conv}")
        return self


class TransformerConfig(_Section):
    backbone: str = "codebert"
    """Hugging Face encoder: `codebert`, `graphcodebert`, `unixcoder` (microsoft/... ids), any hub id, a local directory, an s3:// prefix with a SHA256SUMS file, or `pkg:MODULE/DIR` (shipped in a pip package). The token windows must come from its tokenizer (data.tokenizer=backbone)."""
    pooling: Literal["cls", "mean", "attention"] = "cls"
    """Sequence readout: the first (CLS) token, the masked mean, or attention pooling."""
    head_hidden: int | None = Field(None, ge=1)
    """Hidden size of the classification head; default half the backbone's (768 -> 384 -> 2)."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout before and inside the head."""
    freeze_layers: int = Field(0, ge=0)
    """Freeze the embeddings and the first N encoder layers (cheaper fine-tuning); 0 trains everything."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (less memory, ~30% more compute)."""


class HybridConfig(_Section):
    gnn: GNNConfig = GNNConfig()
    """The graph branch (same settings as model.gnn)."""
    embedding: int = Field(128, ge=4, le=4096)
    """Token embedding size of the sequence branch."""
    lstm_hidden: int = Field(128, ge=4, le=4096)
    """Hidden size per direction of the BiLSTM."""
    lstm_layers: int = Field(1, ge=1, le=8)
    """Stacked BiLSTM layers."""
    max_tokens: int = Field(512, ge=8, le=4096)
    """Tokens of the window the BiLSTM reads (the head of the stored window)."""
    fusion: Literal["concat", "gate"] = "concat"
    """How the branches meet before the head: concatenation, or a learned sigmoid gate between them."""


class FusionBase(_Section):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
    """Short name of the base model (feature name, part of its fold runs' names)."""
    preset: str | None = None
    """Preset of the base track; its data section is replaced by the fusion run's (same folds)."""
    overrides: list[str] = Field(default_factory=list)
    """`key=value` overrides on the base preset (e.g. `train.epochs=5`); data.* besides data.tokenizer are ignored."""
    runs: str | None = None
    """Existing fold runs to consume instead of training: a run directory pattern with `{fold}`, e.g. `runs/gnn-fold{fold}`."""

    @model_validator(mode="after")
    def _check(self) -> "FusionBase":
        if (self.preset is None) == (self.runs is None):
            raise ValueError(f"fusion base {self.name!r}: give exactly one of preset (train it per fold) or runs (consume)")
        if self.runs is not None and "{fold}" not in self.runs:
            raise ValueError(f"fusion base {self.name!r}: runs must contain {{fold}}, got {self.runs!r}")
        return self


class FusionConfig(_Section):
    bases: list[FusionBase] = Field(default_factory=list)
    """Base models whose out-of-fold logits are stacked (each trained per fold, or existing fold runs)."""
    stacker: Literal["logistic", "mlp"] = "logistic"
    """The model on the base logits: logistic regression or a one-hidden-layer MLP."""
    hidden: int = Field(16, ge=1, le=1024)
    """Hidden size of the MLP stacker."""
    baseline: Literal["uniform", "auc"] = "auc"
    """Weighted-average baseline of the base probabilities: equal weights, or weights from out-of-fold ROC-AUC above 0.5."""
    base_overrides: list[str] = Field(default_factory=list)
    """Overrides applied to every base after its own (e.g. `train.epochs=1` for a smoke run)."""


class ModelConfig(_Section):
    track: str = "gnn"
    """Model family, from the track registry (`streamguard presets` lists the tracks)."""
    gnn: GNNConfig = GNNConfig()
    """Settings of the `gnn` track."""
    transformer: TransformerConfig = TransformerConfig()
    """Settings of the `transformer` track."""
    hybrid: HybridConfig = HybridConfig()
    """Settings of the `hybrid` track (GNN + BiLSTM)."""
    fusion: FusionConfig = FusionConfig()
    """Settings of the `fusion` track (a stacker on out-of-fold logits)."""
    cwe_head: bool = False
    """Add a multi-label CWE head beside the binary head (labels: CWEs of the training split's vulnerable functions, e.g. Juliet)."""

    @field_validator("track")
    @classmethod
    def _known_track(cls, value: str) -> str:
        from streamguard.registry import known_tracks  # names only: no torch import

        if value not in known_tracks():
            raise ValueError(f"unknown track {value!r}; known tracks: {', '.join(known_tracks())}")
        return value


class OptimConfig(_Section):
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    """AdamW learning rate."""
    weight_decay: float = Field(0.01, ge=0.0)
    """AdamW decoupled weight decay."""
    schedule: Literal["constant", "linear", "cosine", "plateau"] = "cosine"
    """Learning-rate schedule; `plateau` halves the rate when validation F1 stalls."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up steps for the linear and cosine schedules."""
    grad_clip: float = Field(1.0, ge=0.0)
    """Max gradient L2 norm; 0 disables clipping."""


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    """Maximum number of epochs."""
    batch_size: int = Field(64, ge=1)
    """Samples (graphs or token windows) per micro-batch, per worker."""
    eval_batch_size: int = Field(256, ge=1)
    """Graphs per batch for validation and test."""
    early_stopping_patience: int = Field(4, ge=0)
    """Epochs without a better validation F1 (vulnerable class) before stopping; 0 disables."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision on CUDA: `auto` picks bf16 where supported, else fp16. Ignored on CPU."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA when present."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes."""
    log_every_n_steps: int = Field(20, ge=1)
    """Plain-log cadence when stdout is not a terminal (a progress bar is shown otherwise)."""
    grad_accum_steps: int = Field(1, ge=1)
    """Micro-batches per optimizer step (effective batch = batch_size x this x workers); DDP syncs only on the last."""
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    """Exponential moving average of the weights (e.g. 0.999), used for validation, the best checkpoint and scoring; 0 disables."""
    pad_to_multiple_of: int = Field(8, ge=1)
    """Pad token batches to a multiple of this length (tensor-core friendly shapes)."""
    prefetch_factor: int | None = Field(None, ge=1)
    """Batches each DataLoader worker loads ahead (needs num_workers > 0); default: PyTorch's 2."""
    persistent_workers: bool = False
    """Keep DataLoader workers alive across epochs and validation passes (needs num_workers > 0)."""
    drop_last: bool = False
    """Drop each epoch's last incomplete training batch."""
    sample_weights: Literal["none", "balanced", "column"] = "none"
    """Per-sample training weights: none, class balance (n / (2 n_class)), or confidence weights from the data's `weight` column (missing = 1)."""
    weighted_sampling: bool = False
    """Apply sample_weights by drawing training samples in proportion to them (with replacement, resumable) instead of weighting the loss."""
    binary_loss_weight: float = Field(1.0, gt=0.0)
    """Weight of the binary (vulnerable or not) cross-entropy in the total loss."""
    cwe_loss_weight: float = Field(0.5, ge=0.0)
    """Weight of the multi-label CWE loss when model.cwe_head is on."""

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.weighted_sampling and self.sample_weights == "none":
            raise ValueError("weighted_sampling needs sample_weights=balanced or column")
        if self.num_workers == 0 and (self.prefetch_factor is not None or self.persistent_workers):
            raise ValueError("prefetch_factor and persistent_workers need num_workers > 0")
        return self


class CheckpointConfig(_Section):
    every_n_steps: int = Field(0, ge=0)
    """Also checkpoint every N optimizer steps (0: only at epoch ends). Bounds work lost on a crash."""
    keep_last: int = Field(2, ge=1)
    """Retention: keep this many newest checkpoints ..."""
    keep_best: bool = True
    """... plus the one with the best validation F1."""


class StorageConfig(_Section):
    endpoint_url: str | None = None
    """S3-compatible endpoint such as `http://127.0.0.1:9000`; default: `AWS_ENDPOINT_URL` or AWS."""
    region: str | None = None
    """S3 region; default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1."""
    connect_timeout_s: float = Field(5.0, gt=0)
    """Seconds before an unreachable endpoint is reported."""
    max_attempts: int = Field(3, ge=1)
    """S3 request attempts (botocore standard retry mode)."""


class MetricsConfig(_Section):
    prometheus_port: int | None = Field(None, ge=0, le=65535)
    """Serve live metrics for Prometheus on this port (0 picks a free port); none by default."""
    plots: bool = True
    """Write PNG plots (confusion matrices, ROC, PR, threshold sweep, training curves)."""
    report_interval_s: float = Field(5.0, ge=0.0)
    """Publish live metrics (loss, throughput, step) every this many seconds; 0 only at checkpoints. Also the progress marker cadence that lost-step counts rely on."""


class RayConfig(_Section):
    """How `--ray` runs are placed and how fast failures are noticed. The health-check
    fields trade detection speed for false alarms; see docs/operations.md."""

    address: str | None = None
    """Ray cluster to join (`auto`, `HOST:PORT`); default: `RAY_ADDRESS`, else start a local Ray."""
    num_workers: int = Field(2, ge=1)
    """Ray Train workers (DDP ranks)."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """CPUs reserved per worker."""
    gpus_per_worker: float = Field(0.0, ge=0)
    """GPUs per worker; > 0 trains with NCCL on CUDA, 0 with gloo on CPU."""
    max_failures: int = Field(3, ge=-1)
    """Worker or node losses a run survives (Ray Train FailureConfig.max_failures; -1: unlimited)."""
    max_preemption_failures: int = Field(-1, ge=-1)
    """Restarts caused by node drains (spot notices) allowed on top of max_failures; -1: unlimited."""
    async_checkpoint_upload: bool = True
    """Upload checkpoints in the background (training continues); the preemption checkpoint is always synchronous."""
    report_poll_interval_s: float = Field(2.0, gt=0)
    """How often the Ray Train controller collects reports and checks worker health (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S)."""
    worker_group_start_timeout_s: float = Field(180.0, gt=0)
    """Time allowed to start (or restart) the worker group (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S); Ray's 60 s is tight on busy nodes."""
    worker_health_check_timeout_s: float = Field(600.0, gt=0)
    """A worker that does not answer a health check for this long counts as failed (RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S)."""
    preemption_poll_interval_s: float = Field(1.0, gt=0)
    """How often Ray Train polls for node drains (RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S); Ray's default is 5 s."""
    node_health_check_period_ms: int = Field(1000, ge=100)
    """GCS node health-check period (Ray system config `health_check_period_ms`, default 3000). Applied when StreamGuard starts the Ray head itself; on a cluster set it on the head (docs/operations.md)."""
    node_health_check_failure_threshold: int = Field(5, ge=1)
    """Missed node health checks before a node is declared dead (`health_check_failure_threshold`). Detection time is about period x threshold."""
    stop_poll_interval_s: float = Field(1.0, gt=0)
    """How often workers poll the driver's stop request (SIGTERM to the driver)."""


class Config(_Section):
    """A whole run. Sections map 1:1 to the YAML preset."""

    run: RunConfig = RunConfig()
    """Run identity, storage and seeding."""
    data: DataConfig = DataConfig()
    """Data sources, splits and graph limits."""
    model: ModelConfig = ModelConfig()
    """Track selection and per-track settings."""
    optim: OptimConfig = OptimConfig()
    """Optimizer and learning-rate schedule."""
    train: TrainConfig = TrainConfig()
    """Epochs, batches, early stopping, precision and device."""
    checkpoint: CheckpointConfig = CheckpointConfig()
    """Checkpoint cadence and retention."""
    storage: StorageConfig = StorageConfig()
    """S3 endpoint settings for `s3://` paths."""
    metrics: MetricsConfig = MetricsConfig()
    """Live metrics and plots."""
    ray: RayConfig = RayConfig()
    """Ray Train placement, failure handling and health checks (used with `--ray`)."""

    @model_validator(mode="before")
    @classmethod
    def _tokenizer_follows_backbone(cls, data: Any) -> Any:
        """`data.tokenizer: backbone` -- or no data.tokenizer at all with model.track=transformer --
        becomes the transformer backbone's name: its token ids are the only ones it can read.
        The saved config then says which tokenizer made the windows."""
        if not isinstance(data, dict):
            return data
        section = data.get("data") if isinstance(data.get("data"), dict) else {}
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        follow = section.get("tokenizer") == "backbone" or (
            "tokenizer" not in section and model.get("track") == "transformer")
        if follow:
            tf = model.get("transformer") if isinstance(model.get("transformer"), dict) else {}
            backbone = tf.get("backbone", TransformerConfig.model_fields["backbone"].default)
            data = {**data, "data": {**section, "tokenizer": backbone}}
        return data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """Stable sha256 of the resolved config (stored in every checkpoint)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    folder = resources.files("streamguard") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_preset(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(preset_names())}")
    text = (resources.files("streamguard") / "presets" / f"{name}.yaml").read_text()
    return _yaml_mapping(text, f"preset {name!r}")


def load(
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    config_file: str | Path | None = None,
) -> Config:
    """preset YAML, then `--config` file, then `key=value` overrides; validated once."""
    data: dict[str, Any] = read_preset(preset) if preset else {}
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        data = _deep_merge(data, _yaml_mapping(text, f"config file {str(path)!r}"))
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
    return Config.from_dict(data)


def parse_override(item: str) -> tuple[str, Any]:
    """`optim.lr=3e-4` -> ("optim.lr", 0.0003). Scalars are read as int, float, true/false or
    null (not YAML 1.1, which turns `off` into False and `3e-4` into a string); `[..]` and
    `{..}` are YAML. Pydantic then checks the type against the field."""
    key, sep, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {item!r}: expected section.key=value, e.g. optim.lr=3e-4")
    return key, _scalar(raw)


def _scalar(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("null", "none", "~"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw[:1] in "[{":
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            pass
    return raw


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"bad override {dotted!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _yaml_mapping(text: str, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a mapping of sections, got {type(data).__name__}")
    return data


def _one_line(exc: ValidationError) -> str:
    """First validation error as `field: problem (got value)`; counts the rest."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in first["loc"][:-1])
        allowed = _allowed_keys(section)
        message = f"unknown key {field!r}" + (f"; allowed keys in {section or 'the top level'}: {', '.join(allowed)}" if allowed else "")
    else:
        msg = first["msg"].removeprefix("Value error, ")
        message = f"{field}: {msg} (got {first.get('input')!r})"
    if len(errors) > 1:
        message += f" [+{len(errors) - 1} more error(s)]"
    return message


def _allowed_keys(section: str) -> list[str]:
    model: type[BaseModel] = Config
    for part in filter(None, section.split(".")):
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def describe(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, docstring) for every leaf field: used by `streamguard presets --keys`."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rows.extend(describe(field.annotation, key + "."))
        else:
            rows.append((key, repr(field.default), field.description or ""))
    return rows
