"""Stage 2 of training (SPEC 3.2): fit the MetaVoter on head scores, and check it helps.

The three head scores ``(S_LM', S_reg, S_exp)`` of the stage-2 images are computed once with the
stage-1 model frozen (``hae_model.inference.score_batches``); the MetaVoter then trains on that
small table with L1 loss, Adam 1e-3 and batches of 64 for 10 epochs.

**Decision** (revised): which images. The paper fits the MetaVoter on the training split, where
the head scores are in-sample: when the heads overfit, the MetaVoter learns their overfit and can
end worse than every head. Two settings (``metavoter_data``):

- ``holdout`` (the default): a slice of the training split chosen by a hash of the image id
  (:func:`in_holdout`, ``holdout`` = 10% by default) is kept out of stage 1 and the MetaVoter
  is fitted on it, so it sees the heads as they score unseen images;
- ``train``: the paper's setup, stage 1 on every training row and the MetaVoter on all of them.

Whatever the setting, the MetaVoter must then prove itself (below). ``holdout`` is the default
because only there is that proof honest: the heads never trained on those rows, whereas on
``train`` rows the check compares in-sample head scores and cannot see an overfit. Measured with
``bench/metavoter.py`` (tiny model, test MAE; "overall" is what the model answers with):

================  ==========  =========  ==============  ===============
setup             data        best head  MetaVoter alone  overall
================  ==========  =========  ==============  ===============
well-fit          train       0.073      0.057           0.073 (head)
well-fit          holdout     0.074      0.098           0.074 (head)
small, 40 epochs  train       0.090      0.086           0.090 (head)
small, 40 epochs  holdout     0.078      0.126           0.078 (head)
overfit, 150 ep.  train       0.088      0.086           0.088 (head)
overfit, 150 ep.  holdout     0.095      0.514           0.095 (head)
================  ==========  =========  ==============  ===============

At these sizes the held-out slice is 40 rows or fewer, too few for the MetaVoter, and its
fitted result varies a lot with the seed (0.05-0.19 on the same 298 rows); the check keeps
``overall`` at the best head's level in every case. The last row is the failure the check
exists for: 3 held-out rows, too few to cross-validate, and a MetaVoter 5x worse than the
heads; the model answers with the best head on those rows instead.

Whatever the setting, :func:`choose_overall` then compares the MetaVoter's cross-validated L1 on
its fitting rows with each head's L1 on the same rows; if a head alone does better, that head
gives the model's ``overall`` score (``HAEConfig.overall_from``), with a warning, so the
MetaVoter is never silently worse than a head. On ``holdout`` rows that comparison is honest (the
heads never trained on them); on ``train`` rows it compares in-sample scores.

**Decision** (``min_steps``, re-examined): 10 epochs are only a few optimiser steps on a small
fitting set, too few for a fresh MLP with BatchNorm; the number of epochs is raised until at
least ``min_steps`` = 1000 steps are taken (a no-op for the paper's data, where 10 epochs of
9.4k held-out rows are ~1,500 steps). Test MAE of the MetaVoter with a floor of 0 / 200 / 1000
steps: 0.174 / 0.085 / 0.057 (well-fit, train), 0.287 / 0.104 / 0.098 (well-fit, holdout),
0.260 / 0.082 / 0.086 and 0.264 / 0.152 / 0.126 (small); 3000 or 10000 steps gave no
consistent gain over 1000 (seed-to-seed spread larger than the difference).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from hae_data.hashing import unit_hash
from hae_model.config import VOTER_INPUTS, HAEConfig
from hae_model.heads import MetaVoter, l1_loss

__all__ = [
    "METAVOTER_BATCH",
    "METAVOTER_DATA",
    "METAVOTER_EPOCHS",
    "METAVOTER_LR",
    "METAVOTER_MIN_STEPS",
    "choose_overall",
    "holdout_row",
    "in_holdout",
    "train_metavoter",
]

log = logging.getLogger(__name__)

#: Where the MetaVoter's fitting images come from (see the module docstring).
METAVOTER_DATA = ("holdout", "train")
#: Folds of the cross-validation in :func:`choose_overall`.
CV_FOLDS = 5
#: Fitting defaults (the paper's, plus the step floor; see the module docstring); training's
#: ``--metavoter-*`` options default to these.
METAVOTER_EPOCHS = 10
METAVOTER_MIN_STEPS = 1000
METAVOTER_BATCH = 64
METAVOTER_LR = 1e-3


def in_holdout(image_id: str, fraction: float) -> bool:
    """Whether a training image belongs to the MetaVoter's held-out slice: a hash of its id, so
    the slice is the same on every rank and every run, and stable as the split grows."""
    return unit_hash(image_id, "metavoter") < fraction


def holdout_row(row: dict[str, Any], fraction: float) -> bool:
    """:func:`in_holdout` for an exported row (a picklable row filter for data workers)."""
    return in_holdout(str(row["image_id"]), fraction)


def train_metavoter(
    voter: MetaVoter,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int = METAVOTER_EPOCHS,
    min_steps: int = METAVOTER_MIN_STEPS,
    batch_size: int = METAVOTER_BATCH,
    lr: float = METAVOTER_LR,
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
            log.debug("MetaVoter epoch %d/%d: L1 %.4f", epoch + 1, n_epochs, history[-1])
    log.info("MetaVoter: %d epochs on %d images, final L1 %.4f", n_epochs, n, history[-1])
    voter.eval()
    return history


def _fresh_voter(hidden: int, seed: int) -> MetaVoter:
    torch.manual_seed(seed)
    return MetaVoter(hidden)


def choose_overall(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    keys: Sequence[str],
    *,
    hidden: int = HAEConfig.default("metavoter_hidden"),
    seed: int = 0,
    **train_kwargs: Any,
) -> tuple[str, dict[str, Any]]:
    """Which score should be the model's ``overall``: ``"metavoter"`` or the name of one head.

    The MetaVoter's L1 is estimated by :data:`CV_FOLDS`-fold cross-validation on the fitting
    rows (folds by a hash of ``keys``, the image ids; each fold's voter trained as
    :func:`train_metavoter` with ``train_kwargs``), each head's L1 directly on the same rows.
    The MetaVoter is kept when it is no worse than the best head; with too few rows to
    cross-validate, the best head is chosen. Returns the choice and the numbers behind it
    (JSON-ready).
    """
    n = inputs.shape[0]
    fold = torch.tensor([int(unit_hash(k, "metavoter-fold") * CV_FOLDS) for k in keys])
    pred = torch.full((n,), math.nan)
    for f in range(CV_FOLDS):
        test, train = fold == f, fold != f
        if test.sum() == 0 or train.sum() < 2:
            continue
        voter = _fresh_voter(hidden, seed)
        train_metavoter(voter, inputs[train], targets[train], seed=seed, **train_kwargs)
        with torch.no_grad():
            pred[test] = voter(inputs[test].float()).cpu()
    scored = ~torch.isnan(pred)
    head_l1 = {
        name: float((inputs[scored, i].float() - targets[scored].float()).abs().mean())
        for i, name in enumerate(VOTER_INPUTS)
    }
    if scored.sum() < 2:
        # No evidence for the MetaVoter: trust the head that does best on what there is.
        head_l1 = {
            name: float((inputs[:, i].float() - targets.float()).abs().mean())
            for i, name in enumerate(VOTER_INPUTS)
        }
        best = min(head_l1, key=head_l1.__getitem__)
        log.warning(
            "%d MetaVoter row(s) are too few to check it against the heads: the model's overall "
            "score will be the %s head's",
            n,
            best,
        )
        return best, {"rows": n, "head_l1": head_l1}
    facts: dict[str, Any] = {"rows": int(scored.sum()), "head_l1": head_l1}
    voter_l1 = float((pred[scored] - targets[scored].float()).abs().mean())
    best = min(head_l1, key=head_l1.__getitem__)
    choice = "metavoter" if voter_l1 <= head_l1[best] else best
    facts["metavoter_cv_l1"] = voter_l1
    if choice == "metavoter":
        log.info(
            "MetaVoter cross-validated L1 %.4f <= best head (%s) %.4f",
            voter_l1,
            best,
            head_l1[best],
        )
    else:
        log.warning(
            "MetaVoter cross-validated L1 %.4f is worse than the %s head's %.4f: the model's "
            "overall score will be the %s head's",
            voter_l1,
            best,
            head_l1[best],
            best,
        )
    return choice, facts
