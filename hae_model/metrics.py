"""Evaluation metrics (SPEC 3.4), computed as their names say.

Correlations are signed, exactly as scipy computes them (no absolute value); ``mse`` is the mean
squared error and ``rmse`` its square root (the public release reported ``sqrt(MSE)`` as "mse").
Level metrics compare level words; macro precision/recall/F1 average over the levels present in
the ground truth or the predictions, with 0 where a level was never predicted (scikit-learn's
``average="macro", zero_division=0``). A metric that is undefined for its input (fewer than two
items, or a constant vector for a correlation) is ``None`` (JSON ``null``), never a made-up value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "krcc",
    "level_metrics",
    "mae",
    "mse",
    "plcc",
    "rankdata",
    "regression_metrics",
    "rmse",
    "srcc",
]


def _pair(
    pred: Sequence[float] | np.ndarray, target: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in length: {p.size} vs {t.size}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("pred and target must be finite")
    return p, t


def _correlation_defined(p: np.ndarray, t: np.ndarray) -> bool:
    return p.size >= 2 and np.ptp(p) > 0 and np.ptp(t) > 0


def plcc(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """Pearson linear correlation (signed)."""
    p, t = _pair(pred, target)
    if not _correlation_defined(p, t):
        return None
    pc, tc = p - p.mean(), t - t.mean()
    r = float((pc * tc).sum() / math.sqrt((pc * pc).sum() * (tc * tc).sum()))
    return max(-1.0, min(1.0, r))


def rankdata(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as ``scipy.stats.rankdata``)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start of each run of equal values, then the average rank of the run.
    new_run = np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]])
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.concatenate([starts[1:], [a.size]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def srcc(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """Spearman rank correlation (signed): Pearson correlation of the average ranks."""
    p, t = _pair(pred, target)
    if not _correlation_defined(p, t):
        return None
    return plcc(rankdata(p), rankdata(t))


def krcc(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """Kendall rank correlation, tau-b (signed), as ``scipy.stats.kendalltau`` computes it."""
    p, t = _pair(pred, target)
    if not _correlation_defined(p, t):
        return None
    return float(stats.kendalltau(p, t).statistic)


def mse(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """Mean squared error."""
    p, t = _pair(pred, target)
    return float(np.mean((p - t) ** 2)) if p.size else None


def mae(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """Mean absolute error."""
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t))) if p.size else None


def rmse(pred: Sequence[float], target: Sequence[float]) -> float | None:
    """Root mean squared error."""
    m = mse(pred, target)
    return None if m is None else math.sqrt(m)


def regression_metrics(pred: Sequence[float], target: Sequence[float]) -> dict[str, float | None]:
    """``n``, ``plcc``, ``srcc``, ``krcc``, ``mse``, ``mae``, ``rmse`` of predicted scores."""
    p, t = _pair(pred, target)
    return {
        "n": int(p.size),
        "plcc": plcc(p, t),
        "srcc": srcc(p, t),
        "krcc": krcc(p, t),
        "mse": mse(p, t),
        "mae": mae(p, t),
        "rmse": rmse(p, t),
    }


def level_metrics(pred: Sequence[str], target: Sequence[str]) -> dict[str, float | int | None]:
    """``n``, ``accuracy`` and macro ``precision``/``recall``/``f1`` of predicted level words."""
    if len(pred) != len(target):
        raise ValueError(f"pred and target differ in length: {len(pred)} vs {len(target)}")
    n = len(pred)
    if n == 0:
        return {"n": 0, "accuracy": None, "precision": None, "recall": None, "f1": None}
    labels = sorted(set(pred) | set(target))
    precisions, recalls, f1s = [], [], []
    for label in labels:
        tp = sum(1 for p, t in zip(pred, target, strict=True) if p == label and t == label)
        n_pred = sum(1 for p in pred if p == label)
        n_true = sum(1 for t in target if t == label)
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_true if n_true else 0.0
        precisions.append(prec)
        recalls.append(rec)
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {
        "n": n,
        "accuracy": sum(1 for p, t in zip(pred, target, strict=True) if p == t) / n,
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
    }
