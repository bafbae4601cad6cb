"""Stage 2 of training (SPEC 3.2): fit the MetaVoter on cached head scores.

The three head scores ``(S_LM', S_reg, S_exp)`` of every training image are computed once with
the stage-1 model frozen (``hae_model.inference.score_batches``); the MetaVoter then trains on
that small table with L1 loss, Adam 1e-3 and batches of 64 for 10 epochs.

**Decision**: on a small training set 10 epochs are only a few dozen optimiser steps, too few for
a freshly initialised MLP with BatchNorm; the number of epochs is raised until at least
``min_steps`` steps are taken (1000 by default: a no-op for the paper's 94k images, where 10
epochs are ~14,700 steps).
"""

from __future__ import annotations

import logging
import math

import torch

from hae_model.heads import MetaVoter, l1_loss

__all__ = ["train_metavoter"]

log = logging.getLogger(__name__)


def train_metavoter(
    voter: MetaVoter,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int = 10,
    min_steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``voter`` in place on ``inputs [N, 3]`` -> ``targets [N]``; returns the mean L1
    loss of each epoch. The voter is left in eval mode (BatchNorm on running statistics)."""
    n = inputs.shape[0]
    if n < 2:
        raise ValueError(f"the MetaVoter needs at least 2 training images, got {n}")
    if inputs.shape != (n, 3) or targets.shape != (n,):
        raise ValueError(
            f"expected inputs [N, 3] and targets [N], got {inputs.shape}, {targets.shape}"
        )
    device = next(voter.parameters()).device
    x = inputs.float().to(device)
    y = targets.float().to(device)
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size + (1 if n % batch_size >= 2 else 0)
    n_epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(voter.parameters(), lr=lr)
    voter.train()
    history = []
    for epoch in range(n_epochs):
        perm = torch.randperm(n, generator=generator).to(device)
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            if idx.numel() < 2:  # BatchNorm needs two samples to normalise a batch
                continue
            loss = l1_loss(voter(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        history.append(total / seen)
        if epoch == 0 or (epoch + 1) % max(1, n_epochs // 10) == 0 or epoch + 1 == n_epochs:
            log.info("MetaVoter epoch %d/%d: L1 %.4f", epoch + 1, n_epochs, history[-1])
    voter.eval()
    return history
