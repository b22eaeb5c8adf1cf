"""THE training loop: plain PyTorch, written once, run by the CLI, torchrun, Ray Train and
Tune trials alike. Everything it needs comes from the config (through builders) and the
`Runtime` (rank, device, checkpoints out, stop requests in).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from streamguard import checkpoint
from streamguard.checkpoint import TrainState
from streamguard.config import Config
from streamguard.data.dataset import load_splits
from streamguard.registry import get_track
from streamguard.runtime import STOP_REASONS, Runtime
from streamguard.tracks.common import build
from streamguard.train.ema import EMA
from streamguard.train.evaluate import compute_metrics, extra_sections, f1_for_early_stopping
from streamguard.train.folds import FOLD_PREDICTIONS, fold_predictions
from streamguard.train.loaders import accumulate, eval_loader_options, train_loader_options
from streamguard.train.loaders import steps_per_epoch as count_steps
from streamguard.train.optim import build_optimizer, build_scheduler, steps_per_batch
from streamguard.train.sampler import ResumableSampler
from streamguard.train.step import amp_dtype, predict, predict_outputs, train_group
from streamguard.train.weights import apply_sample_weights

log = logging.getLogger(__name__)


class Preempted(Exception):
    """Raised after the preemption checkpoint is committed; the caller exits cleanly.
    `reason` is the one all ranks agreed on (see runtime.STOP_REASONS)."""

    def __init__(self, message: str, reason: str = "preemption"):
        super().__init__(message)
        self.reason = reason


@dataclass
class Fit:
    """What `fit` leaves for scoring in `train`: the trained model, the data and the final state."""

    model: torch.nn.Module
    splits: object
    state: TrainState
    track: object
    dtype: torch.dtype | None
    already_complete: bool = False  # the run had finished training before this process started


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def fit(cfg: Config, rt: Runtime) -> Fit:
    seed_everything(cfg.run.seed, cfg.run.deterministic)  # same seed on every rank: identical initial weights
    d, t = cfg.data, cfg.train
    track = get_track(cfg.model.track)
    if track.load_data is not None:  # derived data (fusion: trains or reads the base fold runs)
        splits = track.load_data(cfg, rt)
        seed_everything(cfg.run.seed, cfg.run.deterministic)  # the base runs moved the global RNG
    else:
        splits = load_splits(d, seed=cfg.run.seed, storage_options=cfg.storage.model_dump())
    # Loss weights ride on every batch; sampler weights (weighted_sampling) come back here.
    sampler_weights = apply_sample_weights(splits.train, mode=t.sample_weights, weighted_sampling=t.weighted_sampling)
    model = build(track, cfg.model, splits.info).to(rt.device)
    net = DDP(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None) if dist.is_initialized() else model
    steps_per_epoch = count_steps(len(splits.train), batch_size=t.batch_size, world_size=rt.world_size,
                                  grad_accum_steps=t.grad_accum_steps, drop_last=t.drop_last)  # optimizer steps
    optimizer = build_optimizer(model, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = build_scheduler(optimizer, schedule=cfg.optim.schedule, warmup_steps=cfg.optim.warmup_steps,
                                total_steps=steps_per_epoch * t.epochs)
    dtype = amp_dtype(t.amp, rt.device)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=dtype is torch.float16)
    ema = EMA(model, t.ema_decay) if t.ema_decay else None  # checkpointed beside the weights

    state = TrainState()
    resumed_complete = False
    if (resume_dir := rt.latest_checkpoint()) is not None:
        state = checkpoint.load(resume_dir, model=model, optimizer=optimizer, scheduler=scheduler, config_hash=cfg.hash(),
                                rank=rt.rank, ema=ema)
        log.info("resuming from checkpoint %s: epoch %d, step %d of the epoch (global step %d)",
                 resume_dir.name, state.epoch, state.step_in_epoch, state.global_step)
        # Steps between this checkpoint and the last progress the run reported are redone.
        known = rt.last_progress_step()
        lost = max(0, known - state.global_step) if known is not None else 0
        rt.report({"restarts_total": 1, "lost_steps_total": lost, "global_step": state.global_step})
        state.resumes.append({"from_step": state.global_step, "lost_steps": lost, "time": time.time()})
        if lost:
            log.warning("%d optimizer steps since the checkpoint are lost and will be redone", lost)
        resumed_complete = state.completed
        if state.completed:
            log.info("run %s already finished training", cfg.run.name)
    val_loader = track.make_loader(splits.valid, batch_size=t.eval_batch_size, **eval_loader_options(t))
    # Built once, so persistent workers outlive an epoch; re-positioned at each epoch. A
    # private generator: creating the loader must not draw from the global RNG, or a
    # resumed run would diverge from an uninterrupted one.
    sampler = ResumableSampler(splits.train, num_replicas=rt.world_size, rank=rt.rank, seed=cfg.run.seed,
                               epoch=state.epoch, start_batch=0, batch_size=t.batch_size, weights=sampler_weights)
    loader = track.make_loader(splits.train, batch_size=t.batch_size, sampler=sampler,
                               generator=torch.Generator().manual_seed(cfg.run.seed), **train_loader_options(t))

    while state.epoch < t.epochs and not state.completed:
        # A resumed epoch skips the samples of its finished optimizer steps (checkpoints are
        # only written between steps, so no half-accumulated gradient is ever lost).
        sampler.set_position(state.epoch, state.step_in_epoch, t.batch_size * t.grad_accum_steps)
        net.train()
        t0, seen = time.perf_counter(), 0
        loss_sum = torch.tensor(state.epoch_loss_sum if state.step_in_epoch else 0.0, device=rt.device)
        live = _LiveWindow(cfg.metrics.report_interval_s, loss_sum, state.global_step)
        steps = accumulate(loader, t.grad_accum_steps)  # micro-batches per optimizer step
        for group in _progress(steps, rt, state, steps_per_epoch, t.log_every_n_steps):
            loss, n = train_group(net, group, forward=track.forward, optimizer=optimizer, scaler=scaler,
                                  device=rt.device, dtype=dtype, grad_clip=cfg.optim.grad_clip, ema=ema,
                                  binary_weight=t.binary_loss_weight,
                                  cwe_weight=t.cwe_loss_weight if cfg.model.cwe_head else 0.0)
            loss_sum += loss
            seen += n  # samples, counted from the track's Output whatever its batch type
            state.global_step += 1
            state.step_in_epoch += 1
            if steps_per_batch(scheduler):
                scheduler.step()
            every = cfg.checkpoint.every_n_steps
            # One small collective per step: every rank agrees on stopping (and why) and on
            # when to publish live metrics, so all ranks act at the same step boundary.
            stop, report_due = _agree(rt, STOP_REASONS.index(rt.stop_requested()), live.due())
            if report_due:
                rt.report(live.take(loss_sum, state, seen * rt.world_size, optimizer.param_groups[0]["lr"]))
            if stop or (every and state.global_step % every == 0 and state.step_in_epoch < steps_per_epoch):
                state.epoch_loss_sum = loss_sum.item()  # host sync, only when checkpointing
                _save(cfg, rt, model, optimizer, scheduler, state, {"global_step": state.global_step,
                                                                    "epoch": state.epoch}, urgent=bool(stop), ema=ema)
            if stop:
                what = "preempted" if STOP_REASONS[stop] == "preemption" else "stopped (driver shutdown)"
                raise Preempted(f"{what} at epoch {state.epoch} step {state.step_in_epoch}; checkpoint committed",
                                reason=STOP_REASONS[stop])

        train_loss = (loss_sum / max(1, state.step_in_epoch)).item()  # host sync, once per epoch
        samples_per_s = seen * rt.world_size / max(1e-9, time.perf_counter() - t0)
        with ema.applied(model) if ema else contextlib.nullcontext():  # validate the weights that get kept
            labels, probs, _, val_loss = predict(model, val_loader, forward=track.forward, device=rt.device,
                                                 dtype=dtype)
        val_f1 = f1_for_early_stopping(compute_metrics(labels, probs))
        if not steps_per_batch(scheduler):
            scheduler.step(val_f1)
        improved = state.best_metric is None or val_f1 > state.best_metric
        if improved:
            state.best_metric, state.best_step = val_f1, state.global_step
        state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        row = {"epoch": state.epoch, "train_loss": train_loss, "val_loss": val_loss, "val_f1": val_f1,
               "lr": optimizer.param_groups[0]["lr"], "samples_per_s": samples_per_s, "global_step": state.global_step}
        state.history.append(row)
        log.info("epoch %d: train_loss %.4f val_loss %.4f val_f1 %.4f (%.0f samples/s)%s", state.epoch, train_loss,
                 val_loss, val_f1, samples_per_s, " *best*" if improved else "")
        state.epoch, state.step_in_epoch, state.epoch_loss_sum = state.epoch + 1, 0, 0.0
        patience = t.early_stopping_patience
        state.completed = state.epoch >= t.epochs or bool(patience and state.epochs_without_improvement >= patience)
        if state.completed and state.epoch < t.epochs:
            log.info("early stopping: no better validation F1 for %d epochs", patience)
        _save(cfg, rt, model, optimizer, scheduler, state, {
            "train_loss": train_loss, "val_loss": val_loss, "val_f1": val_f1, "samples_per_second": samples_per_s,
            "epoch": state.epoch, "global_step": state.global_step, "learning_rate": row["lr"]}, metric=val_f1, ema=ema,
              urgent=state.completed)  # the last checkpoint is durable before metrics.json says "done"
    return Fit(model, splits, state, track, dtype, already_complete=resumed_complete)


def _save(cfg, rt, model, optimizer, scheduler, state, metrics, metric=None, urgent=False, ema=None) -> None:
    """Rank 0 writes a checkpoint dir and hands it to the runtime; every rank takes part in
    the commit (Ray's report is a collective). The runtime may upload in the background."""
    started = time.time()
    tmp = None
    rng_states = _gather_json(rt, checkpoint.rng_state()) if dist.is_initialized() else None
    if rt.rank == 0:
        tmp = tempfile.mkdtemp(prefix="streamguard-ckpt-")
        checkpoint.save(tmp, model=model, optimizer=optimizer, scheduler=scheduler, state=state,
                        config_yaml=cfg.to_yaml(), config_hash=cfg.hash(), metric=metric, rng_states=rng_states,
                        ema=ema)
    rt.commit({**metrics, "checkpoint_duration_seconds": time.time() - started}, tmp, urgent=urgent)
    if dist.is_initialized():
        dist.barrier()  # nobody runs ahead of a checkpoint that rank 0 has not handed over


def _gather_json(rt: Runtime, obj) -> list:
    """all_gather of a JSON-able object as bytes (no pickle): every rank's RNG state, so a
    resumed DDP run continues each rank's own random stream."""
    data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).to(rt.device)
    sizes = [torch.zeros(1, dtype=torch.long, device=rt.device) for _ in range(rt.world_size)]
    dist.all_gather(sizes, torch.tensor([data.numel()], device=rt.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=rt.device)
    padded[: data.numel()] = data
    chunks = [torch.empty(longest, dtype=torch.uint8, device=rt.device) for _ in range(rt.world_size)]
    dist.all_gather(chunks, padded)
    return [json.loads(bytes(c[: int(n.item())].cpu().tolist())) for c, n in zip(chunks, sizes)]


def _agree(rt: Runtime, stop_code: int, report_due: bool) -> tuple[int, bool]:
    """MAX over ranks of (stop reason code, live report due): rank 0's clock decides reports."""
    if not dist.is_initialized():
        return stop_code, report_due
    t = torch.tensor([float(stop_code), 1.0 if (report_due and rt.rank == 0) else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t[0].item()), bool(t[1].item())


class _LiveWindow:
    """Live metrics over the window since the last report: mean loss, throughput."""

    def __init__(self, interval_s: float, loss_sum: torch.Tensor, global_step: int):
        self.interval_s = interval_s
        self.t0, self.loss0, self.step0, self.seen0 = time.perf_counter(), loss_sum.item(), global_step, 0

    def due(self) -> bool:
        return self.interval_s > 0 and time.perf_counter() - self.t0 >= self.interval_s

    def take(self, loss_sum: torch.Tensor, state: TrainState, seen: int, lr: float) -> dict:
        now, total = time.perf_counter(), loss_sum.item()  # host sync, once per report interval
        steps = max(1, state.global_step - self.step0)
        row = {"train_loss": (total - self.loss0) / steps, "samples_per_second": (seen - self.seen0) / (now - self.t0),
               "epoch": state.epoch, "global_step": state.global_step, "learning_rate": lr}
        self.t0, self.loss0, self.step0, self.seen0 = now, total, state.global_step, seen
        return row


def _progress(loader, rt: Runtime, state: TrainState, steps_per_epoch: int, log_every: int):
    """A tqdm bar on a terminal (rank 0), plain log lines otherwise."""
    if rt.rank == 0 and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(loader, desc=f"epoch {state.epoch}", initial=state.step_in_epoch, total=steps_per_epoch,
                        unit="step", leave=False)
        return
    for i, batch in enumerate(loader, start=state.step_in_epoch + 1):
        yield batch
        if rt.rank == 0 and (i % log_every == 0 or i == steps_per_epoch):
            log.info("epoch %d step %d/%d", state.epoch, i, steps_per_epoch)


def _stored_metrics(run) -> dict | None:
    from streamguard.errors import StorageError

    try:
        return json.loads(run.storage.read_bytes("metrics.json"))
    except (StorageError, ValueError):
        return None


def train(cfg: Config, rt: Runtime, run) -> dict | None:
    """Fit, then (rank 0) score the best checkpoint: the threshold is picked on validation
    and applied to the test split. Writes config, run info, history, metrics and plots."""
    if rt.rank == 0:
        run.write_text("config.yaml", cfg.to_yaml())
    fitted = fit(cfg, rt)
    if rt.rank != 0:
        return None
    if fitted.already_complete and (stored := _stored_metrics(run)) is not None:
        log.info("run %s is complete; its metrics.json stands (use `streamguard evaluate` to re-score)", cfg.run.name)
        return stored
    from streamguard.evaluation.report import write_report
    from streamguard.provenance import run_info

    best = rt.best_checkpoint()
    if best is not None:
        weights = checkpoint.load_for_scoring(best, model=fitted.model)  # the EMA average when there is one
        log.info("scoring the best checkpoint %s (%s weights)", best.name, weights)
    track, s, t = fitted.track, fitted.splits, cfg.train
    loader = lambda ds: track.make_loader(ds, batch_size=t.eval_batch_size, **eval_loader_options(t))  # noqa: E731
    kw = dict(forward=track.forward, device=rt.device, dtype=fitted.dtype)
    scored_valid = predict_outputs(fitted.model, loader(s.valid), **kw)
    validation = compute_metrics(scored_valid["labels"], scored_valid["probs"])
    split, data = ("test", s.test) if s.test else ("valid", s.valid)
    scored = predict_outputs(fitted.model, loader(data), **kw)
    labels, probs, ids = scored["labels"], scored["probs"], scored["ids"]
    if s.holdout is not None:  # an out-of-fold run (fusion): score the fold it never trained on
        run.write_json(FOLD_PREDICTIONS, fold_predictions(fitted.model, s, loader, fold=cfg.data.holdout_fold,
                                                          known={"valid": scored_valid, split: scored}, **kw))
    run.write_json("run_info.json", run_info(cfg, s.info, world_size=rt.world_size, device=str(rt.device)))
    return write_report(run, labels=labels, probs=probs, sample_ids=ids, split=split,
                        threshold=validation["best_threshold_by_f1"], history=fitted.state.history,
                        valid=scored_valid,  # predictions.json keeps validation scores (ensembles)
                        plots=cfg.metrics.plots, extra={
                            "track": cfg.model.track, "run": cfg.run.name, "best_step": fitted.state.best_step,
                            "resumes": fitted.state.resumes,
                            "validation": {k: validation[k] for k in ("f1_at_0_5", "f1_at_best_threshold",
                                           "best_threshold_by_f1", "roc_auc", "accuracy_at_0_5")},
                            **extra_sections(s.info.extra, scored, s.info.cwe_labels)})
