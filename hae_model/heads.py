"""The scoring heads of HumanAesExpert (SPEC 3.1) and the MetaVoter (SPEC 3.2), in one file.

Shapes use B for the batch and H for the backbone's hidden size. Every head reads one hidden
state per sample: the last token of the prompt, just before the answer (see ``model.py``).

- :func:`level_score`: the LM head's score from the logits of the five level words.
- :class:`RegressionHead`: ``h [B, H] -> score [B]``, a linear layer and a sigmoid.
- :class:`ExpertHead`: ``h [B, H] -> scores [B, 12]``, the 12-dimension hierarchy as a sparse
  MLP: a linear layer gives the 9 leaves, then one small FFN per inner node reads only its
  children (Facial Aesthetic <- 5 facial leaves, General Appearance <- Outfit, Body Shape,
  Looks, Overall <- Facial Aesthetic, Environment, General Appearance).
- :class:`MetaVoter`: ``(S_LM', S_reg, S_exp) [B, 3] -> score [B]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from annotation_schema import Standard, load_standard

__all__ = ["ExpertHead", "MetaVoter", "NodeFFN", "RegressionHead", "level_score"]


def level_score(level_logits: torch.Tensor) -> torch.Tensor:
    """The LM head's score in [0, 1] from the logits of the five level words.

    ``level_logits [..., 5]`` are the next-token logits of ``bad`` ... ``excellent`` right after
    the answer prefix. Softmax over those five only, ``S = sum_i i * p_i`` in [1, 5] (paper
    Eq. 4), returned as ``(S - 1) / 4`` (SPEC 3.1), i.e. weights 0, .25, .5, .75, 1.
    Returns ``[...]`` in float32.
    """
    n = level_logits.shape[-1]
    probs = torch.softmax(level_logits.float(), dim=-1)
    weights = torch.arange(n, device=probs.device, dtype=probs.dtype) / (n - 1)
    return (probs * weights).sum(-1)


class RegressionHead(nn.Module):
    """``h [B, H] -> score [B]`` in (0, 1): one linear layer and a sigmoid (paper Eq. 5)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The score ``[B]`` of each hidden state."""
        return torch.sigmoid(self.linear(hidden)).squeeze(-1)


class NodeFFN(nn.Module):
    """One inner node of the Expert head: ``children [B, k] -> node [B]``.

    Linear(k, 16) - GELU - Linear(16, 1) - sigmoid, so every node is a score in (0, 1) before it
    feeds its parent.
    """

    def __init__(self, in_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, children: torch.Tensor) -> torch.Tensor:
        """The node's score ``[B]`` from its children's ``[B, k]``."""
        return torch.sigmoid(self.net(children)).squeeze(-1)


class ExpertHead(nn.Module):
    """``h [B, H] -> scores [B, 12]`` in the standard's vector order (paper Fig. 3b).

    The wiring is read from ``annotation_schema``: ``leaf`` maps ``h`` to the leaf dimensions
    (in vector order of the leaves), and ``nodes[str(i)]`` is the FFN of inner node ``i``
    (1-based), whose inputs are exactly ``standard.children(i)``. So the root (Overall
    Aesthetic) sees the leaves only through Facial Aesthetic, Environment and General
    Appearance. ``scores[:, standard.root - 1]`` is ``S_exp``.
    """

    def __init__(
        self, hidden_size: int, standard: Standard | None = None, ffn_hidden: int = 16
    ) -> None:
        super().__init__()
        std = standard or load_standard()
        self.n_dims = len(std.dimensions)
        self.leaves: tuple[int, ...] = std.leaves
        self.inner: tuple[int, ...] = std.inner_nodes  # children before parents
        self.children_of: dict[int, tuple[int, ...]] = {i: std.children(i) for i in self.inner}
        self.leaf = nn.Linear(hidden_size, len(self.leaves))
        self.nodes = nn.ModuleDict(
            {str(i): NodeFFN(len(self.children_of[i]), ffn_hidden) for i in self.inner}
        )

    def combine(self, leaf_scores: torch.Tensor) -> torch.Tensor:
        """Run the hierarchy from the leaf scores ``[B, n_leaves]`` (in (0, 1)) to ``[B, 12]``."""
        node: dict[int, torch.Tensor] = {
            idx: leaf_scores[:, j] for j, idx in enumerate(self.leaves)
        }
        for i in self.inner:
            kids = torch.stack([node[c] for c in self.children_of[i]], dim=-1)  # [B, k]
            node[i] = self.nodes[str(i)](kids)
        return torch.stack([node[i] for i in range(1, self.n_dims + 1)], dim=-1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The 12 dimension scores ``[B, 12]`` of each hidden state."""
        return self.combine(torch.sigmoid(self.leaf(hidden)))


class MetaVoter(nn.Module):
    """``(S_LM', S_reg, S_exp) [B, 3] -> score [B]`` in (0, 1) (SPEC 3.2).

    3 -> 16 -> 16 -> 1 with BatchNorm1d and ReLU after each hidden layer and a sigmoid output;
    trained with L1 loss on cached head scores while everything else is frozen.
    """

    def __init__(self, hidden: int = 16, n_inputs: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_inputs, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, head_scores: torch.Tensor) -> torch.Tensor:
        """The MetaVoter's score ``[B]`` from the heads' scores ``[B, n_inputs]``."""
        return torch.sigmoid(self.net(head_scores)).squeeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B]`` over ``mask [B]``; 0 (with a zero gradient) when the mask is empty.

    Masked-out entries are multiplied by zero, so they send exactly no gradient (the switch of
    paper Eq. 7 relies on this).
    """
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, the MetaVoter's loss (paper Eq. 6)."""
    return F.l1_loss(pred, target)
