"""Training (SPEC 3.3): ``python -m hae_model.train --data DIR --base DIR_OR_ID --output DIR``.

Stage 1 fine-tunes the backbone with LoRA (language model and connector; the vision tower stays
frozen) and trains the regression and Expert heads in full, on batches that mix overall and
12-dimension samples (the per-sample switch). AdamW (lr 1e-4, weight decay 0.1 on matrices),
cosine schedule with 5% warm-up, gradient accumulation, clipping at 1.0, bf16 autocast on a
GPU. Checkpoints every ``--save-every`` steps; ``--resume`` continues from the latest one, data
position included. Stage 2 caches the three head scores of every training image and fits the
MetaVoter (``hae_model.metavoter``). The output folder then holds the adapter, the heads, the
MetaVoter (safetensors), ``config.json``, the tokenizer and image processor, and
``train_config.json`` / ``training_summary.json``.

The same command runs data-parallel (DDP) under ``torchrun`` or ``accelerate launch``: the
launcher's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` select NCCL on GPUs and gloo on CPUs. An epoch
is ``ceil(train rows / (batch * accumulation * world))`` optimiser steps in which every training
row is seen exactly once over all ranks and workers, in micro-batches that mix overall and
12-dimension rows in proportion (``hae_model.data.TrainingStream``); every rank takes the same
number of micro-batches, so none ever waits for one that ran dry.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from hae_data.records import PARTS
from hae_model.config import VOTER_INPUTS
from hae_model.data import TrainingStream, kept_rows, list_row_groups, seed_worker
from hae_model.inference import (
    autocast,
    autocast_dtype,
    inference_loader,
    resolve_device,
    score_batches,
)
from hae_model.metavoter import (
    METAVOTER_DATA,
    choose_overall,
    holdout_row,
    in_holdout,
    train_metavoter,
)
from hae_model.model import HumanAesExpert
from hae_model.processing import collate_train

__all__ = ["TrainConfig", "main", "train"]

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
#: The cached head scores the MetaVoter was fitted on, written beside the model.
METAVOTER_SCORES = "metavoter_train_scores.parquet"
_STEP_RE = re.compile(r"^step-(\d+)$")
# Tensors of a training batch that HumanAesExpert.forward takes.
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "pixel_values",
    "head_pos",
    "labels",
    "level_pos",
    "is_overall",
    "score",
    "dimension_scores",
)


@dataclass
class TrainConfig:
    """Every knob of a training run; saved as ``train_config.json`` in the output folder."""

    data: str
    base: str
    output: str
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 4
    #: When set, the samples per optimiser step over all ranks (the paper's recipe: 16);
    #: ``grad_accum`` is then derived as ``global_batch / (batch_size * world)``.
    global_batch: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    clip: float = 1.0
    max_tiles: int = 12
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    reg_weight: float = 1.0
    exp_weight: float = 1.0
    parts: tuple[str, ...] = PARTS
    num_workers: int = 4
    shuffle_buffer: int = 512
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    compile: bool = False
    precision: str = "auto"
    gradient_checkpointing: bool = False
    device: str = "auto"
    #: ``holdout`` or ``train`` (the paper's): see ``hae_model.metavoter``.
    metavoter_data: str = "holdout"
    #: Share of the training split kept out of stage 1 for the MetaVoter (``holdout`` only).
    metavoter_holdout: float = 0.1
    metavoter_epochs: int = 10
    metavoter_min_steps: int = 1000
    metavoter_batch: int = 64
    metavoter_lr: float = 1e-3
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        positive = ("batch_size", "grad_accum", "max_tiles", "lora_r", "log_every", "save_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.lr <= 0 or self.weight_decay < 0 or self.clip <= 0:
            raise ValueError("lr and clip must be > 0 and weight_decay >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.num_workers < 0 or self.keep_checkpoints < 1:
            raise ValueError("num_workers must be >= 0 and keep_checkpoints >= 1")
        if self.metavoter_data not in METAVOTER_DATA:
            raise ValueError(
                f"metavoter_data must be one of {', '.join(METAVOTER_DATA)}, "
                f"got {self.metavoter_data!r}"
            )
        if not 0 < self.metavoter_holdout < 1:
            raise ValueError(f"metavoter_holdout must be in (0, 1), got {self.metavoter_holdout}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ValueError(f"parts must be some of {', '.join(PARTS)}, got {list(self.parts)}")


# ---------------------------------------------------------------------------------------------
# Distributed setup


@dataclass
class _Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _setup_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
        log.info("rank %d/%d on %s (%s)", rank, world, device, backend)
    return _Dist(rank, world, local_rank, device)


# ---------------------------------------------------------------------------------------------
# Optimiser, schedule, checkpoints


def _optimizer(model: HumanAesExpert, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, p in _trainable(model):
        # Weight decay on matrices only: biases and norm scales keep their scale.
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)


def _trainable(model: HumanAesExpert) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at ``step``: linear warm-up to 1, then cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _latest_checkpoint(output: Path) -> Path | None:
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.match(p.name))]
    return max(steps)[1] if steps else None


def _save_checkpoint(
    output: Path,
    model: HumanAesExpert,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    keep: int,
    rng_states: list[dict[str, Any]],
) -> Path:
    folder = output / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{state['step']:07d}"
    stage = folder / f".staging-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        weights = {n: p.detach().contiguous().cpu() for n, p in _trainable(model)}
        save_file(weights, str(stage / "trainable.safetensors"))
        torch.save(
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, stage / "optim.pt"
        )
        torch.save(rng_states, stage / "rng.pt")  # one entry per rank
        (stage / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    old = sorted(p for p in folder.iterdir() if _STEP_RE.match(p.name))[:-keep]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    log.info("checkpoint saved: %s", final)
    return final


def _load_checkpoint(
    folder: Path,
    model: HumanAesExpert,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    weights = load_file(str(folder / "trainable.safetensors"))
    names = {n for n, _ in _trainable(model)}
    if set(weights) != names:
        missing, extra = sorted(names - set(weights)), sorted(set(weights) - names)
        raise ValueError(
            f"{folder} does not match this model (missing {missing[:3]}, unexpected {extra[:3]}); "
            "was it written with other LoRA or head settings?"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)
    optim = torch.load(folder / "optim.pt", map_location="cpu", weights_only=False)
    opt.load_state_dict(optim["optimizer"])
    sched.load_state_dict(optim["scheduler"])
    state = json.loads((folder / "state.json").read_text())
    state["rng"] = torch.load(folder / "rng.pt", map_location="cpu", weights_only=False)
    return state


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def _restore_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])


def _check_in_sync(model: HumanAesExpert, d: _Dist) -> None:
    """Every rank must hold the same trainable weights after DDP training; fail loudly if not."""
    if d.world == 1:
        return
    total = torch.zeros(1, dtype=torch.float64, device=d.device)
    for _, p in _trainable(model):
        total += p.detach().double().sum() + p.detach().double().pow(2).sum()
    gathered = [torch.zeros_like(total) for _ in range(d.world)]
    dist.all_gather(gathered, total)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"DDP replicas diverged: weight checksums {values}")
    log.info("DDP replicas in sync (weight checksum %.6f on %d ranks)", values[0], d.world)


# ---------------------------------------------------------------------------------------------
# Training


def train(cfg: TrainConfig) -> Path:
    """Run both stages; returns the output folder (only rank 0 writes the final model)."""
    cfg.validate()
    d = _setup_distributed(cfg.device)
    try:
        return _train(cfg, d)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def resolve_grad_accum(cfg: TrainConfig, world: int) -> int:
    """Micro-batches per optimiser step: from ``--global-batch`` when given (so the effective
    batch stays the same on any number of GPUs), else ``--grad-accum`` as given."""
    if cfg.global_batch is None:
        if world > 1:
            log.warning(
                "effective batch is %d (batch %d x accumulation %d x %d ranks); pass "
                "--global-batch 16 to keep the paper's recipe on any number of GPUs",
                cfg.batch_size * cfg.grad_accum * world,
                cfg.batch_size,
                cfg.grad_accum,
                world,
            )
        return cfg.grad_accum
    per_step = cfg.batch_size * world
    if cfg.global_batch < per_step or cfg.global_batch % per_step:
        raise ValueError(
            f"--global-batch {cfg.global_batch} is not a multiple of batch size "
            f"{cfg.batch_size} x {world} rank(s)"
        )
    return cfg.global_batch // per_step


def _train(cfg: TrainConfig, d: _Dist) -> Path:
    output = Path(cfg.output)
    if not cfg.resume and _latest_checkpoint(output) is not None:
        raise ValueError(
            f"{output / CHECKPOINTS} holds checkpoints of an earlier run: pass --resume to "
            "continue it, or choose another --output"
        )
    cfg = dataclasses.replace(cfg, grad_accum=resolve_grad_accum(cfg, d.world))
    groups = list_row_groups(cfg.data, "train", cfg.parts)
    if cfg.metavoter_data == "holdout":
        # The MetaVoter's slice stays out of stage 1, so its head scores are out-of-sample.
        rows = kept_rows(groups, lambda image_id: not in_holdout(image_id, cfg.metavoter_holdout))
    else:
        rows = kept_rows(groups)
    n_rows = sum(len(r) for r in rows)
    n_held = sum(g.num_rows for g in groups) - n_rows
    if cfg.metavoter_data == "holdout" and (n_rows == 0 or n_held < 2):
        raise ValueError(
            f"--metavoter-holdout {cfg.metavoter_holdout} leaves {n_rows} rows for stage 1 and "
            f"{n_held} for the MetaVoter; both need rows (or use --metavoter-data train)"
        )
    global_batch = cfg.batch_size * cfg.grad_accum * d.world
    steps_per_epoch = math.ceil(n_rows / global_batch)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = math.ceil(cfg.warmup_ratio * total)
    amp = autocast_dtype(cfg.precision, d.device)

    random.seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)
    torch.manual_seed(cfg.seed)
    model, encoder = HumanAesExpert.from_base(
        cfg.base,
        max_tiles=cfg.max_tiles,
        lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        reg_weight=cfg.reg_weight,
        exp_weight=cfg.exp_weight,
    )
    if d.rank:
        # Own dropout masks per rank; DDP copies rank 0's initial weights to every rank anyway.
        torch.manual_seed(cfg.seed + d.rank)
    model.metavoter.requires_grad_(False)  # stage 2 only
    model.to(d.device)
    if cfg.gradient_checkpointing:
        model.base_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    n_train = sum(p.numel() for _, p in _trainable(model))
    n_all = sum(p.numel() for p in model.parameters())
    if d.main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "train_config.json").write_text(
            json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n"
        )
        log.info(
            "%d training rows in %d row groups (%d more held out for the MetaVoter); %d steps "
            "(%d per epoch) of %d samples (%d x %d accumulation x %d ranks); %s; %d trainable "
            "of %d parameters",
            n_rows,
            len(groups),
            n_held,
            total,
            steps_per_epoch,
            global_batch,
            cfg.batch_size,
            cfg.grad_accum,
            d.world,
            f"autocast {amp}" if amp else "fp32",
            n_train,
            n_all,
        )

    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, partial(cosine_with_warmup, total=total, warmup=warmup)
    )
    step, skip_batches, rng = 0, 0, None
    latest = _latest_checkpoint(output) if cfg.resume else None
    if latest is not None:
        state = _load_checkpoint(latest, model, opt, sched)
        step = int(state["step"])
        rng = state["rng"][d.rank] if len(state["rng"]) == d.world else None
        same_stream = all(
            state.get(k) == v
            for k, v in (
                ("world", d.world),
                ("num_workers", cfg.num_workers),
                ("batch_size", cfg.batch_size),
                ("grad_accum", cfg.grad_accum),
                ("seed", cfg.seed),
                # The rows of stage 1 depend on these; another set of rows, another stream.
                ("metavoter_data", cfg.metavoter_data),
                ("metavoter_holdout", cfg.metavoter_holdout),
            )
        )
        if same_stream:
            skip_batches = int(state["micro_batches"])
        else:
            log.warning(
                "resuming with other ranks/workers/batch settings than %s: the data stream "
                "restarts from a new shuffle instead of the exact position",
                latest,
            )
        if state.get("total") != total:
            log.warning(
                "%s was written for %s steps; this run has %d", latest, state.get("total"), total
            )
        log.info("resumed from %s at step %d/%d", latest, step, total)
    elif cfg.resume:
        log.info("--resume: no checkpoint under %s, starting from scratch", output / CHECKPOINTS)

    if step < total:
        _stage1(
            cfg, d, model, encoder, groups, rows, opt, sched, step, total, skip_batches, amp, rng
        )
    _check_in_sync(model, d)
    _stage2(cfg, d, model, encoder, groups, amp)
    if d.main:
        model.save_pretrained(output, encoder)
        log.info("model saved to %s", output)
    d.barrier()
    return output


def _stage1(
    cfg: TrainConfig,
    d: _Dist,
    model: HumanAesExpert,
    encoder: Any,
    groups: list,
    rows: list[list[int]],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    total: int,
    skip_batches: int,
    amp: torch.dtype | None,
    rng: dict[str, Any] | None,
) -> None:
    output = Path(cfg.output)
    stream = TrainingStream(
        groups,
        encoder.encode_train,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        rank=d.rank,
        world_size=d.world,
        # A resumed run whose position cannot be restored gets a fresh shuffle, not a replay.
        seed=cfg.seed if skip_batches or step == 0 else cfg.seed + step,
        shuffle_buffer=cfg.shuffle_buffer,
        skip_batches=skip_batches,
        rows=rows,
    )
    loader = DataLoader(
        stream,
        batch_size=None,  # the stream yields whole micro-batches
        num_workers=cfg.num_workers,
        collate_fn=partial(_collate_micro_batch, pad_id=encoder.pad_id),
        worker_init_fn=seed_worker if cfg.num_workers else None,
        pin_memory=d.device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers else None,
        persistent_workers=False,
    )
    if cfg.compile:
        model.compile_backbone()
    model.train()
    ddp: torch.nn.Module = model
    if d.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None
        )
    params = [p for _, p in _trainable(model)]
    batches = iter(loader)
    if rng is not None:
        # After iter(loader), which draws its base seed from the global generator, exactly as
        # the interrupted run had done before it saved this state.
        _restore_rng(rng)
    micro_batches = skip_batches
    # Loss sums stay on the device until a log line needs them: no host sync per micro-batch.
    window = torch.zeros(6, dtype=torch.float64, device=d.device)  # loss, lm, reg, exp, n, samples
    t_window = t_start = time.perf_counter()
    start_step = step
    inputs: dict[str, torch.Tensor] | None = None
    while step < total:
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            micro_batches += 1
            weight = 1.0
            if batch is None:  # no row (or no readable row) in this micro-batch
                if d.world == 1:
                    continue
                if inputs is None:
                    raise RuntimeError(
                        f"rank {d.rank}: its first micro-batch has no readable row, and DDP "
                        "needs every rank in every step; use a smaller --batch-size"
                    )
                # Take part in the gradient all-reduce with a zero-weight pass of the last batch.
                weight = 0.0
            else:
                inputs = {
                    k: batch[k].to(d.device, non_blocking=True) for k in MODEL_INPUTS if k in batch
                }
            sync = micro == cfg.grad_accum - 1
            ctx = ddp.no_sync() if (d.world > 1 and not sync) else contextlib.nullcontext()
            with ctx:
                with autocast(d.device, amp):
                    out = ddp(**inputs)
                (out.loss * (weight / cfg.grad_accum)).backward()
            if weight:
                losses = torch.stack([out.loss, out.lm_loss, out.reg_loss, out.exp_loss])
                window[:4] += losses.detach().double()
                window[4] += 1
                window[5] += inputs["input_ids"].shape[0]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1

        if step % cfg.log_every == 0 or step == total:
            _log_window(d, window, step, total, start_step, t_start, t_window, sched, grad_norm)
            window.zero_()
            t_window = time.perf_counter()
        if step % cfg.save_every == 0 or step == total:
            state = {
                "step": step,
                "total": total,
                "micro_batches": micro_batches,
                "world": d.world,
                "num_workers": cfg.num_workers,
                "batch_size": cfg.batch_size,
                "grad_accum": cfg.grad_accum,
                "seed": cfg.seed,
                "metavoter_data": cfg.metavoter_data,
                "metavoter_holdout": cfg.metavoter_holdout,
            }
            rng_states = [_rng_state()]
            if d.world > 1:
                rng_states = [None] * d.world
                dist.all_gather_object(rng_states, _rng_state())
            if d.main:
                _save_checkpoint(output, model, opt, sched, state, cfg.keep_checkpoints, rng_states)
            d.barrier()
    del batches, loader


def _collate_micro_batch(samples: list[dict[str, Any]], pad_id: int) -> dict[str, Any] | None:
    """A micro-batch of the training stream as model inputs; ``None`` when it has no row."""
    return collate_train(samples, pad_id) if samples else None


def _log_window(
    d: _Dist,
    window: torch.Tensor,
    step: int,
    total: int,
    start_step: int,
    t_start: float,
    t_window: float,
    sched: torch.optim.lr_scheduler.LRScheduler,
    grad_norm: torch.Tensor,
) -> None:
    stats = window.clone()
    if d.world > 1:
        dist.all_reduce(stats)
    loss, lm, reg, exp, n, samples = stats.tolist()
    n = max(n, 1.0)  # a window of empty micro-batches only
    now = time.perf_counter()
    rate = samples / max(now - t_window, 1e-9)
    per_step = (now - t_start) / max(1, step - start_step)
    eta = timedelta(seconds=round(per_step * (total - step)))
    if d.main:
        log.info(
            "step %d/%d loss %.4f (lm %.4f reg %.4f exp %.4f) lr %.2e grad-norm %.3f "
            "%.1f samples/s ETA %s",
            step,
            total,
            loss / n,
            lm / n,
            reg / n,
            exp / n,
            sched.get_last_lr()[0],
            float(grad_norm),
            rate,
            eta,
        )


def _stage2(
    cfg: TrainConfig,
    d: _Dist,
    model: HumanAesExpert,
    encoder: Any,
    groups: list,
    amp: torch.dtype | None,
) -> None:
    """Cache (S_LM', S_reg, S_exp) of the MetaVoter's images (all ranks), fit it and choose
    what gives ``overall`` (rank 0; ``hae_model.metavoter``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    model.eval()
    holdout = cfg.metavoter_data == "holdout"
    loader = inference_loader(
        groups,
        encoder,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        rank=d.rank,
        world_size=d.world,
        row_filter=partial(holdout_row, fraction=cfg.metavoter_holdout) if holdout else None,
    )
    local = [
        {k: item[k] for k in ("image_id", "source", "part", "score", *VOTER_INPUTS)}
        for item in score_batches(
            model, encoder, loader, device=d.device, autocast=autocast(d.device, amp)
        )
        if "error" not in item
    ]
    rows = local
    if d.world > 1:
        gathered: list[Any] = [None] * d.world
        dist.all_gather_object(gathered, local)
        rows = [r for part in gathered for r in part]
    if d.main:
        output = Path(cfg.output)
        rows.sort(key=lambda r: (r["part"], r["image_id"]))
        pq.write_table(pa.Table.from_pylist(rows), output / METAVOTER_SCORES)
        inputs = torch.tensor([[r[h] for h in VOTER_INPUTS] for r in rows])
        targets = torch.tensor([r["score"] for r in rows], dtype=torch.float64)
        fit = {
            "epochs": cfg.metavoter_epochs,
            "min_steps": cfg.metavoter_min_steps,
            "batch_size": cfg.metavoter_batch,
            "lr": cfg.metavoter_lr,
        }
        choice, check = choose_overall(
            inputs,
            targets,
            [r["image_id"] for r in rows],
            hidden=model.config.metavoter_hidden,
            seed=cfg.seed,
            **fit,
        )
        torch.manual_seed(cfg.seed)
        model.metavoter.requires_grad_(True)
        model.metavoter.cpu()
        fresh = type(model.metavoter)(model.config.metavoter_hidden)
        model.metavoter.load_state_dict(fresh.state_dict())
        history = train_metavoter(model.metavoter, inputs, targets, seed=cfg.seed, **fit)
        model.metavoter.to(d.device)
        model.config.overall_from = choice
        summary = {
            "metavoter_data": cfg.metavoter_data,
            "metavoter_training_images": len(rows),
            "metavoter_epochs": len(history),
            "metavoter_final_l1": history[-1],
            "metavoter_check": check,
            "overall_from": choice,
        }
        (output / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    d.barrier()


# ---------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hae_model.train",
        description="Train HumanAesExpert on an exported HumanBeauty folder: stage 1 (LoRA on the "
        "backbone + regression and Expert heads), then stage 2 (MetaVoter). Runs data-parallel "
        "under torchrun or accelerate launch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = TrainConfig.__dataclass_fields__
    g = p.add_argument_group("inputs and outputs")
    g.add_argument("--data", required=True, help="export folder (with data/<part>/train-*.parquet)")
    g.add_argument(
        "--base",
        required=True,
        help="backbone: local folder or hub id (e.g. a tiny one from "
        "python -m hae_model.tiny, or OpenGVLab/InternVL3-1B-hf)",
    )
    g.add_argument("--output", required=True, help="folder for checkpoints and the final model")
    g.add_argument(
        "--parts", nargs="+", default=list(PARTS), choices=PARTS, help="which export parts to use"
    )
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=float, default=d["epochs"].default)
    g.add_argument(
        "--max-steps", type=int, default=None, help="optimiser steps (overrides --epochs)"
    )
    g.add_argument("--batch-size", type=int, default=d["batch_size"].default, help="per device")
    g.add_argument("--grad-accum", type=int, default=d["grad_accum"].default)
    g.add_argument(
        "--global-batch",
        type=int,
        default=None,
        help="samples per optimiser step over all GPUs (sets --grad-accum); 16 in the paper",
    )
    g.add_argument("--lr", type=float, default=d["lr"].default)
    g.add_argument("--weight-decay", type=float, default=d["weight_decay"].default)
    g.add_argument("--warmup-ratio", type=float, default=d["warmup_ratio"].default)
    g.add_argument("--clip", type=float, default=d["clip"].default, help="gradient norm clip")
    g.add_argument("--seed", type=int, default=d["seed"].default)
    g = p.add_argument_group("model")
    g.add_argument("--max-tiles", type=int, default=d["max_tiles"].default, help="1: one tile")
    g.add_argument("--lora-r", type=int, default=d["lora_r"].default)
    g.add_argument("--lora-alpha", type=int, default=d["lora_alpha"].default)
    g.add_argument("--lora-dropout", type=float, default=d["lora_dropout"].default)
    g.add_argument("--reg-weight", type=float, default=d["reg_weight"].default, help="lambda")
    g.add_argument("--exp-weight", type=float, default=d["exp_weight"].default, help="mu")
    g = p.add_argument_group("MetaVoter (stage 2)")
    g.add_argument(
        "--metavoter-data",
        choices=METAVOTER_DATA,
        default=d["metavoter_data"].default,
        help="holdout: fit on a hash-chosen slice of the training split kept out of stage 1; "
        "train: the paper's setup, fit on in-sample scores of the whole training split",
    )
    g.add_argument(
        "--metavoter-holdout",
        type=float,
        default=d["metavoter_holdout"].default,
        help="share of the training split held out for the MetaVoter",
    )
    g.add_argument("--metavoter-epochs", type=int, default=d["metavoter_epochs"].default)
    g.add_argument(
        "--metavoter-min-steps",
        type=int,
        default=d["metavoter_min_steps"].default,
        help="more epochs until at least this many steps (small datasets)",
    )
    g.add_argument("--metavoter-batch", type=int, default=d["metavoter_batch"].default)
    g.add_argument("--metavoter-lr", type=float, default=d["metavoter_lr"].default)
    g = p.add_argument_group("runtime")
    g.add_argument("--num-workers", type=int, default=d["num_workers"].default, help="per rank")
    g.add_argument("--shuffle-buffer", type=int, default=d["shuffle_buffer"].default)
    g.add_argument("--log-every", type=int, default=d["log_every"].default, help="steps")
    g.add_argument("--save-every", type=int, default=d["save_every"].default, help="steps")
    g.add_argument("--keep-checkpoints", type=int, default=d["keep_checkpoints"].default)
    g.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    g.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    g.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="auto: bf16 autocast on a GPU that supports it, else fp32",
    )
    g.add_argument("--gradient-checkpointing", action="store_true")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["parts"] = tuple(dict.fromkeys(args.parts))
    cfg = TrainConfig(**values)
    try:
        cfg.validate()
        resolve_device(cfg.device)
        list_row_groups(cfg.data, "train", cfg.parts)
        if not cfg.resume and _latest_checkpoint(Path(cfg.output)) is not None:
            raise ValueError(
                f"--output {cfg.output} holds checkpoints of an earlier run: pass --resume to "
                "continue it, or choose another --output"
            )
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    base = Path(cfg.base)
    if (base.is_absolute() or cfg.base.startswith(".") or base.exists()) and not base.is_dir():
        parser.error(f"--base {cfg.base}: no such folder")
    log.info("config: %s", json.dumps(asdict(cfg), sort_keys=True))
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
