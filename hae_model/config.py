"""The model's configuration: one dataclass, saved as ``config.json`` beside every checkpoint.

A checkpoint folder written by :meth:`hae_model.model.HumanAesExpert.save_pretrained` holds this
file, the LoRA adapter, the heads and the MetaVoter; the file says which backbone they belong to
and how to rebuild the heads, so ``HumanAesExpert.from_pretrained(folder)`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hae_data.outdir import write_text_atomic

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_LORA_TARGETS",
    "DTYPES",
    "OVERALL_SOURCES",
    "TRAINING_OPTIONS",
    "VOTER_INPUTS",
    "HAEConfig",
    "check_max_tiles",
    "resolve_dtype",
]

CONFIG_NAME = "config.json"

#: The MetaVoter's inputs, in order: ``(S_LM', S_reg, S_exp)`` (SPEC 3.2).
VOTER_INPUTS = ("lm", "regression", "expert")
#: What can give a model's ``overall`` score: the MetaVoter, or one head alone when stage 2
#: found the MetaVoter worse than that head on data the heads did not train on.
OVERALL_SOURCES = ("metavoter", *VOTER_INPUTS)

#: LoRA goes on the language model's attention and MLP projections and on the connector (the
#: vision-to-text projector), never on the vision tower (SPEC 3.3). A regex that peft matches
#: against full module names of a transformers InternVL model.
DEFAULT_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    r"|.*multi_modal_projector\.(linear_1|linear_2)"
)

#: ``--dtype``: the dtype of the backbone's weights. ``auto`` is bfloat16 on a CUDA GPU that
#: supports it, else float32. The heads, the MetaVoter and the level logits stay float32.
DTYPES = ("auto", "float32", "bfloat16", "float16")

#: The :class:`HAEConfig` fields a training run chooses (``--max-tiles``, ``--lora-r``, ...);
#: ``hae_model.train.TrainConfig`` takes their defaults from here and checks them here.
TRAINING_OPTIONS = ("max_tiles", "lora_r", "lora_alpha", "lora_dropout", "reg_weight", "exp_weight")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype for a ``--dtype`` choice (one of :data:`DTYPES`) on ``device``."""
    import torch

    if name == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def check_max_tiles(max_tiles: int) -> None:
    """Raise ``ValueError`` unless ``max_tiles`` is >= 1: the rule for a model's tiling and for
    another tiling chosen at inference."""
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")


@dataclass
class HAEConfig:
    """Everything that defines a HumanAesExpert model apart from its weights.

    Attributes:
        base_model: local folder or hub id of the backbone (a transformers image-text-to-text
            checkpoint, InternVL first). A local folder is stored as an absolute path.
        hidden_size: width of the backbone's last hidden state, the input of both heads.
        level_token_ids: token id of each level word (``bad`` ... ``excellent``) as it follows
            the overall answer prefix; checked to be single tokens when the model is built.
        image_seq_length: image tokens per tile (256 for InternVL at 448 px).
        tile_size: side of one square tile in pixels (448 for InternVL).
        max_tiles: InternVL dynamic tiling: at most this many tiles plus a thumbnail; 1 means
            one resized tile per image.
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling and dropout (paper: 8, 32, 0.05).
        lora_target_modules: regex of the backbone modules that get LoRA.
        reg_weight: lambda of SPEC 3.1, the weight of the regression loss on overall samples.
        exp_weight: mu of SPEC 3.1, the weight of the Expert loss on 12-dimension samples.
        expert_ffn_hidden: hidden width of each FFN of the Expert head (16).
        metavoter_hidden: hidden width of the MetaVoter (16).
        overall_from: what gives the ``overall`` score (one of :data:`OVERALL_SOURCES`): the
            MetaVoter, unless stage 2 measured it worse than the best head
            (``hae_model.metavoter``).
        standard_version: version of ``annotation_schema/standard.yaml`` the heads were built on.
        format_version: version of this checkpoint layout.
    """

    base_model: str
    hidden_size: int
    level_token_ids: list[int]
    image_seq_length: int
    tile_size: int
    max_tiles: int = 12
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = DEFAULT_LORA_TARGETS
    reg_weight: float = 1.0
    exp_weight: float = 1.0
    expert_ffn_hidden: int = 16
    metavoter_hidden: int = 16
    overall_from: str = "metavoter"
    standard_version: int = 1
    format_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check_options(**{name: getattr(self, name) for name in TRAINING_OPTIONS})
        if self.overall_from not in OVERALL_SOURCES:
            raise ValueError(
                f"overall_from must be one of {', '.join(OVERALL_SOURCES)}, "
                f"got {self.overall_from!r}"
            )

    @staticmethod
    def check_options(
        *,
        max_tiles: int,
        lora_r: int,
        lora_alpha: int,
        lora_dropout: float,
        reg_weight: float,
        exp_weight: float,
    ) -> None:
        """Raise ``ValueError`` naming the first bad value of the :data:`TRAINING_OPTIONS`: the
        one check of these fields, for a config being built and for a training run's options."""
        check_max_tiles(max_tiles)
        if lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {lora_r}")
        if lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be > 0, got {lora_alpha}")
        if not 0.0 <= lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout}")
        if reg_weight < 0 or exp_weight < 0:
            raise ValueError("reg_weight and exp_weight must be >= 0")

    @classmethod
    def default(cls, name: str) -> Any:
        """The default value of field ``name``."""
        return cls.__dataclass_fields__[name].default

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` into ``folder`` (via a temporary name); returns its path."""
        path = Path(folder) / CONFIG_NAME
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> HAEConfig:
        """Read ``config.json`` from ``folder``; unknown or missing fields are a clear error."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a HumanAesExpert checkpoint folder")
        raw = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"{path}: unknown fields {unknown} (written by a newer version?)")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
