"""Training (SPEC 3.3): ``python -m hae_model.train --data DIR --base DIR_OR_ID --output DIR``.

Stage 1 fine-tunes the backbone with LoRA (language model and connector; the vision tower stays
frozen) and trains the regression and Expert heads in full, on batches that mix overall and
12-dimension samples (the per-sample switch). AdamW (lr 1e-4, weight decay 0.1 on matrices),
cosine schedule with 5% warm-up, gradient accumulation, clipping at 1.0. The backbone's weights
are in ``--dtype`` (bf16 on a GPU that supports it, fp32 on the CPU); the LoRA weights, the
heads and the level logits stay fp32; ``--precision`` adds bf16 autocast. Checkpoints every
``--save-every`` steps, and on SIGTERM/SIGINT (then the process exits with 128 + the signal's
number); ``--resume`` continues from the latest one, data position included, bit for bit.
Stage 2 caches the three head scores of the MetaVoter's images and fits the MetaVoter
(``hae_model.metavoter``). The output folder then holds the adapter, the heads, the MetaVoter
(safetensors), ``config.json``, the tokenizer and image processor, and ``train_config.json``
/ ``training_summary.json``.

The same command runs data-parallel (DDP) under ``torchrun``: the launcher's
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` select NCCL on GPUs and gloo on CPUs. An epoch is
``ceil(train rows / (batch * accumulation * world))`` optimiser steps in which every training
row is seen exactly once over all ranks and workers, in micro-batches that mix overall and
12-dimension rows in proportion (``hae_model.data.TrainingStream``); every rank takes the same
number of micro-batches, so none ever waits for one that ran dry.

Every option is checked before anything is loaded (:meth:`TrainConfig.validate`, then
:func:`check` for the data and folders): a run that starts does not fail later on a setting.
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
import signal
import sys
import threading
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
from hae_model.config import DTYPES, TRAINING_OPTIONS, VOTER_INPUTS, HAEConfig, resolve_dtype
from hae_model.data import TrainingStream, kept_rows, list_row_groups, seed_worker
from hae_model.inference import (
    PRECISIONS,
    autocast,
    autocast_dtype,
    inference_loader,
    resolve_device,
    score_batches,
)
from hae_model.metavoter import (
    METAVOTER_BATCH,
    METAVOTER_DATA,
    METAVOTER_EPOCHS,
    METAVOTER_LR,
    METAVOTER_MIN_STEPS,
    choose_overall,
    holdout_row,
    in_holdout,
    train_metavoter,
)
from hae_model.model import HumanAesExpert
from hae_model.model_hub import add_push_args, prepare_train_args, push_trained
from hae_model.processing import SampleEncoder, collate_train

__all__ = ["TrainConfig", "TrainingInterrupted", "check", "main", "train"]

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
# What a checkpoint must match for a resumed run to take up the data stream where it stopped.
_STREAM_KEYS = (
    "world",
    "num_workers",
    "batch_size",
    "grad_accum",
    "seed",
    # The rows of stage 1 depend on these; another set of rows, another stream.
    "metavoter_data",
    "metavoter_holdout",
)


@dataclass
class TrainConfig:
    """Every knob of a training run; saved as ``train_config.json`` in the output folder.

    The model's own settings (``max_tiles``, ``lora_*``, ``reg_weight``, ``exp_weight``:
    :data:`hae_model.config.TRAINING_OPTIONS`) take their defaults from
    :class:`~hae_model.config.HAEConfig`, which also checks them.
    """

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
    max_tiles: int = HAEConfig.default("max_tiles")
    lora_r: int = HAEConfig.default("lora_r")
    lora_alpha: int = HAEConfig.default("lora_alpha")
    lora_dropout: float = HAEConfig.default("lora_dropout")
    reg_weight: float = HAEConfig.default("reg_weight")
    exp_weight: float = HAEConfig.default("exp_weight")
    parts: tuple[str, ...] = PARTS
    num_workers: int = 4
    shuffle_buffer: int = 512
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    compile: bool = False
    #: Autocast: ``auto`` is bf16 autocast on a GPU that supports it (see ``hae_model.inference``).
    precision: str = "auto"
    #: The backbone's weights (:data:`hae_model.config.DTYPES`).
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    device: str = "auto"
    #: ``holdout`` or ``train`` (the paper's): see ``hae_model.metavoter``.
    metavoter_data: str = "holdout"
    #: Share of the training split kept out of stage 1 for the MetaVoter (``holdout`` only).
    metavoter_holdout: float = 0.1
    metavoter_epochs: int = METAVOTER_EPOCHS
    metavoter_min_steps: int = METAVOTER_MIN_STEPS
    metavoter_batch: int = METAVOTER_BATCH
    metavoter_lr: float = METAVOTER_LR
    extra: dict[str, Any] = field(default_factory=dict)

    def model_options(self) -> dict[str, Any]:
        """The :class:`~hae_model.config.HAEConfig` fields this run sets."""
        return {name: getattr(self, name) for name in TRAINING_OPTIONS}

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting, stage 2's included."""
        HAEConfig.check_options(**self.model_options())
        positive = ("batch_size", "grad_accum", "log_every", "save_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "global_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.lr <= 0 or self.weight_decay < 0 or self.clip <= 0:
            raise ValueError("lr and clip must be > 0 and weight_decay >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ValueError(f"parts must be some of {', '.join(PARTS)}, got {list(self.parts)}")
        if self.metavoter_data not in METAVOTER_DATA:
            raise ValueError(
                f"metavoter_data must be one of {', '.join(METAVOTER_DATA)}, "
                f"got {self.metavoter_data!r}"
            )
        if not 0 < self.metavoter_holdout < 1:
            raise ValueError(f"metavoter_holdout must be in (0, 1), got {self.metavoter_holdout}")
        if self.metavoter_batch < 2:
            # BatchNorm in the MetaVoter normalises over a batch: one sample cannot train it.
            raise ValueError(f"metavoter_batch must be >= 2, got {self.metavoter_batch}")
        if self.metavoter_epochs < 0 or self.metavoter_min_steps < 0:
            raise ValueError("metavoter_epochs and metavoter_min_steps must be >= 0")
        if self.metavoter_epochs == 0 and self.metavoter_min_steps == 0:
            raise ValueError("metavoter_epochs and metavoter_min_steps cannot both be 0")
        if self.metavoter_lr <= 0:
            raise ValueError(f"metavoter_lr must be > 0, got {self.metavoter_lr}")


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped stage 1; a checkpoint of ``step`` was saved first."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


def check(cfg: TrainConfig) -> None:
    """Everything that can be checked before loading the model: the options, the device, the
    training rows, and an output folder that holds no earlier run unless resuming."""
    cfg.validate()
    resolve_device(cfg.device)
    list_row_groups(cfg.data, "train", cfg.parts)
    if not cfg.resume and _latest_checkpoint(Path(cfg.output)) is not None:
        raise ValueError(
            f"--output {cfg.output} holds checkpoints of an earlier run: pass --resume to "
            "continue it, or choose another --output"
        )
    base = Path(cfg.base)
    if (base.is_absolute() or cfg.base.startswith(".") or base.exists()) and not base.is_dir():
        raise FileNotFoundError(f"--base {cfg.base}: no such folder")


# ---------------------------------------------------------------------------------------------
# Training, top to bottom


def train(cfg: TrainConfig) -> Path:
    """Run both stages; returns the output folder (only rank 0 writes the final model).

    Raises :class:`TrainingInterrupted` when SIGTERM or SIGINT arrived during stage 1, after
    saving a checkpoint of the step it was in.
    """
    check(cfg)
    d = _setup_distributed(cfg.device)
    try:
        with _StopRequest() as stop:
            return _train(cfg, d, stop)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: _Dist, stop: _StopRequest) -> Path:
    output = Path(cfg.output)
    cfg = dataclasses.replace(cfg, grad_accum=resolve_grad_accum(cfg, d.world))

    # The rows of stage 1 and the schedule.
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
    dtype = resolve_dtype(cfg.dtype, d.device)

    # The model: LoRA and heads trainable, the MetaVoter only in stage 2.
    random.seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)
    torch.manual_seed(cfg.seed)
    model, encoder = HumanAesExpert.from_base(cfg.base, dtype=dtype, **cfg.model_options())
    if d.rank:
        # Own dropout masks per rank; DDP copies rank 0's initial weights to every rank anyway.
        torch.manual_seed(cfg.seed + d.rank)
    model.metavoter.requires_grad_(False)
    model.to(d.device)
    if cfg.gradient_checkpointing:
        model.base_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    if d.main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "train_config.json").write_text(
            json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n"
        )
        log.info(
            "%d training rows in %d row groups (%d more held out for the MetaVoter); %d steps "
            "(%d per epoch) of %d samples (%d x %d accumulation x %d ranks); backbone %s, %s; "
            "%d trainable of %d parameters",
            n_rows,
            len(groups),
            n_held,
            total,
            steps_per_epoch,
            global_batch,
            cfg.batch_size,
            cfg.grad_accum,
            d.world,
            str(dtype).removeprefix("torch."),
            f"autocast {amp}" if amp else "no autocast",
            sum(p.numel() for _, p in _trainable(model)),
            sum(p.numel() for p in model.parameters()),
        )

    # Optimiser, schedule, and where a resumed run starts.
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
        if all(state.get(k) == v for k, v in _stream_state(cfg, d).items()):
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

    # The data stream, from where a resumed run stopped.
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
        worker_init_fn=_train_worker_init if cfg.num_workers else None,
        pin_memory=d.device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers else None,
        persistent_workers=False,
    )
    # Stage 1: optimiser steps from `step` to `total` (`skip_batches` micro-batches done).
    if cfg.compile and step < total:
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
            # Gradients are all-reduced once per optimiser step, on its last micro-batch.
            last = micro == cfg.grad_accum - 1
            with ddp.no_sync() if d.world > 1 and not last else contextlib.nullcontext():
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

        signum = stop.agreed(d)
        if step % cfg.log_every == 0 or step == total or signum:
            _log_window(d, window, step, total, start_step, t_start, t_window, sched, grad_norm)
            window.zero_()
            t_window = time.perf_counter()
        saved = None
        if step % cfg.save_every == 0 or step == total or signum:
            state = {"step": step, "total": total, "micro_batches": micro_batches}
            state.update(_stream_state(cfg, d))
            saved = _save_checkpoint(Path(cfg.output), d, model, opt, sched, state, cfg)
        if signum:
            raise TrainingInterrupted(signum, step, saved)
    del batches  # stops the data workers before stage 2 starts its own
    stop.release()  # stage 2 is short: a signal there acts as without this handler
    _check_in_sync(model, d)
    _stage2(cfg, d, model, encoder, groups, amp)
    if d.main:
        model.save_pretrained(output, encoder)
        log.info("model saved to %s", output)
    d.barrier()
    return output


def _stage2(
    cfg: TrainConfig,
    d: _Dist,
    model: HumanAesExpert,
    encoder: SampleEncoder,
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
        choice, facts = choose_overall(
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
            "metavoter_check": facts,
            "overall_from": choice,
        }
        (output / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    d.barrier()


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


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at ``step``: linear warm-up to 1, then cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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


def _collate_micro_batch(samples: list[dict[str, Any]], pad_id: int) -> dict[str, Any] | None:
    """A micro-batch of the training stream as model inputs; ``None`` when it has no row."""
    return collate_train(samples, pad_id) if samples else None


def _train_worker_init(worker_id: int) -> None:
    """Data workers leave SIGTERM/SIGINT to the training process, which saves a checkpoint
    before it stops them (a signal to the process group reaches the workers too)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed_worker(worker_id)


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


# ---------------------------------------------------------------------------------------------
# Processes: DDP set-up, stop requests


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


class _StopRequest:
    """Turns SIGTERM/SIGINT into a request that stage 1 honours at the end of its step (a
    checkpoint, then :class:`TrainingInterrupted`); a second signal acts at once, as usual."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        # Python delivers signals to the main thread only (train() may run elsewhere in tests).
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.release()
        log.warning("%s: stopping after this step, with a checkpoint", signal.Signals(signum).name)

    def release(self) -> None:
        """Give the signals back to the handlers they had before."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def agreed(self, d: _Dist) -> int:
        """The signal to stop on, the same on every rank (they must save the same step)."""
        if d.world == 1:
            return self.signum
        flag = torch.tensor([self.signum], dtype=torch.int64, device=d.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag)


# ---------------------------------------------------------------------------------------------
# Checkpoints: trainable weights, optimiser and schedule, data position, RNG of every rank


def _stream_state(cfg: TrainConfig, d: _Dist) -> dict[str, Any]:
    values = {**asdict(cfg), "world": d.world}
    return {k: values[k] for k in _STREAM_KEYS}


def _latest_checkpoint(output: Path) -> Path | None:
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.match(p.name))]
    return max(steps)[1] if steps else None


def _save_checkpoint(
    output: Path,
    d: _Dist,
    model: HumanAesExpert,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    cfg: TrainConfig,
) -> Path:
    """Rank 0 writes ``checkpoints/step-N`` (staged, then renamed) with every rank's RNG."""
    rng_states = [_rng_state()]
    if d.world > 1:
        rng_states = [None] * d.world
        dist.all_gather_object(rng_states, _rng_state())
    folder = output / CHECKPOINTS
    final = folder / f"step-{state['step']:07d}"
    if d.main:
        folder.mkdir(parents=True, exist_ok=True)
        stage = folder / f".staging-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            weights = {n: p.detach().contiguous().cpu() for n, p in _trainable(model)}
            save_file(weights, str(stage / "trainable.safetensors"))
            optim = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            torch.save(optim, stage / "optim.pt")
            torch.save(rng_states, stage / "rng.pt")  # one entry per rank
            (stage / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        for old in sorted(p for p in folder.iterdir() if _STEP_RE.match(p.name))[
            : -cfg.keep_checkpoints
        ]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint saved: %s", final)
    d.barrier()
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


# ---------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hae_model.train",
        description="Train HumanAesExpert on an exported HumanBeauty folder: stage 1 (LoRA on the "
        "backbone + regression and Expert heads), then stage 2 (MetaVoter). Runs data-parallel "
        "under torchrun.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = TrainConfig.__dataclass_fields__
    g = p.add_argument_group("inputs and outputs")
    g.add_argument(
        "--data",
        required=True,
        help="export folder (with data/<part>/train-*.parquet), or a Hub dataset id",
    )
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
    g.add_argument(
        "--metavoter-batch", type=int, default=d["metavoter_batch"].default, help="at least 2"
    )
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
        "--dtype",
        choices=DTYPES,
        default=d["dtype"].default,
        help="the backbone's weights; auto: bfloat16 on a GPU that supports it, else float32 "
        "(LoRA, heads and level logits stay float32)",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d["precision"].default,
        help="auto: bf16 autocast on a GPU that supports it, else fp32",
    )
    g.add_argument("--gradient-checkpointing", action="store_true")
    g.add_argument("--device", default=d["device"].default, help="auto, cpu, cuda or cuda:N")
    add_push_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 2 on a bad option (before anything is loaded), 128 + the signal's
    number when SIGTERM/SIGINT stopped training (after a checkpoint)."""
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
        cfg.validate()  # every option, before a Hub --data is downloaded
        prepare_train_args(args)  # a Hub --data is fetched here; --push-to-hub checked
        cfg = dataclasses.replace(cfg, data=args.data)
        check(cfg)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    log.info("config: %s", json.dumps(asdict(cfg), sort_keys=True))
    try:
        train(cfg)
    except TrainingInterrupted as stopped:
        log.warning(
            "training stopped by %s at step %d; checkpoint %s; rerun with --resume to continue",
            signal.Signals(stopped.signum).name,
            stopped.step,
            stopped.checkpoint,
        )
        return 128 + stopped.signum
    return push_trained(cfg.output, args) if rank == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
