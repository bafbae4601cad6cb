"""HumanAesExpert: a vision-language backbone, its LM head, a regression head, an Expert head and
a MetaVoter (SPEC 3).

One forward pass of the backbone gives the last hidden states ``h [B, T, H]``; then

- the LM loss is cross-entropy on the answer tokens only (logits are computed only there, never
  over the whole sequence and vocabulary);
- the regression and Expert heads read ``h`` at ``head_pos``, the last prompt token (SPEC 3.1);
- the level-word logits are read at ``level_pos`` through the five rows of the LM head;
- the per-sample switch (paper Eq. 7): an overall sample adds ``lambda * MSE(regression)``, a
  12-dimension sample adds ``mu * mean MSE(Expert, 12 nodes)``; masks zero the other term, so
  one batch can mix both kinds and each head only learns from its own samples.

Scoring an image (:meth:`HumanAesExpert.predict`) runs the vision tower once and the language
model on two prompts: the overall question followed by the answer prefix (``S_LM'`` at its last
token, ``S_reg`` at its last prompt token) and the 12-dimension question (the Expert head's 12
scores; ``S_exp`` is the root). The MetaVoter maps ``(S_LM', S_reg, S_exp)`` to the final score.

A checkpoint folder (:meth:`save_pretrained`) holds ``config.json``, ``adapter/`` (the peft LoRA
adapter), ``heads.safetensors``, ``metavoter.safetensors`` and the tokenizer and image processor;
the backbone's own weights stay where ``config.base_model`` points.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from annotation_schema import Standard, load_standard
from hae_model.config import HAEConfig
from hae_model.heads import ExpertHead, MetaVoter, RegressionHead, level_score, masked_mean
from hae_model.processing import IGNORE_INDEX, SampleEncoder, check_level_tokens

__all__ = [
    "ADAPTER_DIR",
    "HEADS_FILE",
    "METAVOTER_FILE",
    "HAEOutput",
    "HumanAesExpert",
    "Prediction",
    "load_backbone",
    "load_for_inference",
]

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
HEADS_FILE = "heads.safetensors"
METAVOTER_FILE = "metavoter.safetensors"


@dataclass
class HAEOutput:
    """What :meth:`HumanAesExpert.forward` returns. Losses are ``None`` without targets.

    ``reg_score [B]``, ``expert_scores [B, 12]``, ``level_logits [B, 5]`` and ``lm_score [B]``
    (meaningful where ``level_pos >= 0``) are float32.
    """

    loss: torch.Tensor | None
    lm_loss: torch.Tensor | None
    reg_loss: torch.Tensor | None
    exp_loss: torch.Tensor | None
    reg_score: torch.Tensor
    expert_scores: torch.Tensor
    level_logits: torch.Tensor
    lm_score: torch.Tensor


@dataclass
class Prediction:
    """Scores of B images from :meth:`HumanAesExpert.predict`, float32 on the CPU.

    ``lm``, ``regression``, ``expert`` (the root node, ``S_exp``) and ``metavoter`` are ``[B]``;
    ``dimensions [B, 12]`` are the Expert head's 12 nodes in vector order; ``overall [B]`` is
    the model's answer, the score named by ``HAEConfig.overall_from`` (the MetaVoter's unless
    stage 2 chose a head).
    """

    lm: torch.Tensor
    regression: torch.Tensor
    expert: torch.Tensor
    metavoter: torch.Tensor
    dimensions: torch.Tensor
    overall: torch.Tensor

    def heads(self) -> torch.Tensor:
        """``[B, 3]`` MetaVoter inputs ``(S_LM', S_reg, S_exp)``."""
        return torch.stack([self.lm, self.regression, self.expert], dim=-1)


def load_backbone(base: str, *, dtype: torch.dtype | None = None) -> nn.Module:
    """The transformers image-text-to-text model at ``base`` (local folder or hub id)."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(base, dtype=dtype or torch.float32)


def _vision_shape(backbone_config: Any) -> tuple[int, int]:
    """``(image tokens per tile, tile side in pixels)`` of an InternVL-style config."""
    vision = backbone_config.vision_config
    size = vision.image_size
    patch = vision.patch_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    ratio = getattr(backbone_config, "downsample_ratio", 1.0)
    return int((size // patch) ** 2 * ratio**2), int(size)


class HumanAesExpert(nn.Module):
    """Backbone (usually wrapped by peft) + regression head + Expert head + MetaVoter."""

    def __init__(
        self, backbone: nn.Module, config: HAEConfig, standard: Standard | None = None
    ) -> None:
        super().__init__()
        std = standard or load_standard()
        self.config = config
        self.backbone = backbone
        self.regression = RegressionHead(config.hidden_size)
        self.expert = ExpertHead(config.hidden_size, std, config.expert_ffn_hidden)
        self.metavoter = MetaVoter(config.metavoter_hidden)
        self.root_index = std.root - 1
        self.register_buffer(
            "level_token_ids", torch.tensor(config.level_token_ids, dtype=torch.long), False
        )
        self._trunk: nn.Module | None = None

    # -- building and loading ---------------------------------------------------------------

    @classmethod
    def from_base(
        cls, base: str, *, dtype: torch.dtype | None = None, **overrides: Any
    ) -> tuple[HumanAesExpert, SampleEncoder]:
        """A fresh model around the backbone at ``base``, with LoRA applied, and its encoder.

        ``overrides`` are :class:`HAEConfig` fields (``max_tiles``, ``lora_r``, ...). Raises
        :class:`hae_model.processing.LevelTokenError` when a level word is not a single token.
        """
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        check_level_tokens(tokenizer)  # before loading weights: fail fast on a wrong tokenizer
        backbone = load_backbone(base, dtype=dtype)
        base_ref = str(Path(base).resolve()) if Path(base).is_dir() else base
        image_processor = AutoImageProcessor.from_pretrained(base)
        return cls.from_backbone(backbone, tokenizer, image_processor, base_ref, **overrides)

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module,
        tokenizer: Any,
        image_processor: Any,
        base_ref: str,
        **overrides: Any,
    ) -> tuple[HumanAesExpert, SampleEncoder]:
        """Wrap an already built backbone (LoRA applied here); ``base_ref`` is where
        ``from_pretrained`` will find it again (a folder or hub id)."""
        from peft import LoraConfig, get_peft_model

        level_ids = check_level_tokens(tokenizer)
        seq_len, tile = _vision_shape(backbone.config)
        config = HAEConfig(
            base_model=base_ref,
            hidden_size=backbone.config.get_text_config().hidden_size,
            level_token_ids=level_ids,
            image_seq_length=seq_len,
            tile_size=tile,
            **overrides,
        )
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
            bias="none",
        )
        model = cls(get_peft_model(backbone, lora), config)
        return model, SampleEncoder.from_config(config, tokenizer, image_processor)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        *,
        base: str | None = None,
        dtype: torch.dtype | None = None,
        trainable: bool = False,
    ) -> HumanAesExpert:
        """Load a checkpoint folder: config, backbone (from ``base`` or ``config.base_model``),
        LoRA adapter, heads and MetaVoter. The model is returned in eval mode."""
        from peft import PeftModel

        folder = Path(folder)
        config = HAEConfig.load(folder)
        backbone = load_backbone(base or config.base_model, dtype=dtype)
        peft_model = PeftModel.from_pretrained(
            backbone, str(folder / ADAPTER_DIR), is_trainable=trainable
        )
        model = cls(peft_model, config)
        model.load_heads(folder)
        return model.eval()

    def load_heads(self, folder: str | os.PathLike[str]) -> None:
        """Load ``heads.safetensors`` and ``metavoter.safetensors`` (every key must match)."""
        heads = load_file(str(Path(folder) / HEADS_FILE))
        self.regression.load_state_dict(_sub(heads, "regression."))
        self.expert.load_state_dict(_sub(heads, "expert."))
        self.metavoter.load_state_dict(load_file(str(Path(folder) / METAVOTER_FILE)))

    def save_pretrained(
        self, folder: str | os.PathLike[str], encoder: SampleEncoder | None = None
    ) -> Path:
        """Write config, adapter, heads, MetaVoter (and the encoder's tokenizer and image
        processor) into ``folder``. Files are written into a staging folder first and then
        moved into place, so a crash leaves the previous checkpoint, not half of a new one."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stage = folder / f".staging-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            self.config.save(stage)
            self.peft_model.save_pretrained(str(stage / ADAPTER_DIR))
            heads = {f"regression.{k}": v for k, v in self.regression.state_dict().items()}
            heads.update({f"expert.{k}": v for k, v in self.expert.state_dict().items()})
            save_file(_contiguous(heads), str(stage / HEADS_FILE))
            save_file(_contiguous(self.metavoter.state_dict()), str(stage / METAVOTER_FILE))
            if encoder is not None:
                encoder.tokenizer.save_pretrained(str(stage))
                encoder.image_processor.save_pretrained(str(stage))
            for entry in stage.iterdir():
                dest = folder / entry.name
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                os.replace(entry, dest)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return folder

    # -- backbone access --------------------------------------------------------------------

    @property
    def peft_model(self) -> nn.Module:
        """The peft wrapper of the backbone (the object that saves the adapter)."""
        return self.backbone

    @property
    def base_model(self) -> nn.Module:
        """The transformers model, LoRA layers injected (``InternVLForConditionalGeneration``)."""
        get = getattr(self.backbone, "get_base_model", None)
        return get() if get is not None else self.backbone

    def trunk(self) -> nn.Module:
        """The backbone without its LM head (``InternVLModel``): returns last hidden states."""
        return self._trunk if self._trunk is not None else self.base_model.model

    def compile_backbone(self, **kwargs: Any) -> None:
        """Run the backbone trunk through ``torch.compile`` (heads and losses stay eager).

        Sets dynamo's ``capture_scalar_outputs``: InternVL checks its image-token count with a
        ``.item()``, which otherwise splits the graph in two.
        """
        import torch._dynamo

        torch._dynamo.config.capture_scalar_outputs = True
        self._trunk = torch.compile(self.base_model.model, **kwargs)

    def lm_head(self) -> nn.Module:
        """The backbone's output projection to the vocabulary."""
        return self.base_model.get_output_embeddings()

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """``[B, T, H]`` last hidden states of the backbone for a batch of prompts with images."""
        out = self.trunk()(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            use_cache=False,
        )
        return out.last_hidden_state

    def level_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, H] -> [B, 5]`` next-token logits of the five level words (LM head rows only)."""
        head = self.lm_head()
        bias = head.bias[self.level_token_ids] if head.bias is not None else None
        # float32 whatever the autocast: bf16 logits of size 16-32 are spaced 0.06-0.125 apart,
        # which would quantise S_LM' before the five-way softmax.
        with torch.autocast(hidden.device.type, enabled=False):
            weight = head.weight[self.level_token_ids].float()
            return F.linear(hidden.float(), weight, None if bias is None else bias.float())

    def _heads(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The small heads run in float32 whatever the autocast around them: their outputs are
        # the scores being regressed.
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.float()
            return self.regression(h), self.expert(h)

    # -- training forward -------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        head_pos: torch.Tensor,
        labels: torch.Tensor | None = None,
        level_pos: torch.Tensor | None = None,
        is_overall: torch.Tensor | None = None,
        score: torch.Tensor | None = None,
        dimension_scores: torch.Tensor | None = None,
    ) -> HAEOutput:
        """Losses and head outputs for a (possibly mixed) batch from ``collate_train``.

        ``input_ids``/``attention_mask``/``labels [B, T]``, ``pixel_values [tiles, 3, S, S]``,
        ``head_pos``/``level_pos [B]``, ``is_overall [B]`` (bool), ``score [B]``,
        ``dimension_scores [B, 12]``. With ``labels`` the loss is
        ``CE + reg_weight * L_reg + exp_weight * L_exp`` with the per-sample switch.
        """
        hidden = self.hidden_states(input_ids, attention_mask, pixel_values)  # [B, T, H]
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        reg_score, expert_scores = self._heads(hidden[rows, head_pos])  # [B], [B, 12]
        lpos = level_pos if level_pos is not None else head_pos
        level_logits = self.level_logits(hidden[rows, lpos.clamp(min=0)]).float()  # [B, 5]
        out = HAEOutput(
            loss=None,
            lm_loss=None,
            reg_loss=None,
            exp_loss=None,
            reg_score=reg_score,
            expert_scores=expert_scores,
            level_logits=level_logits,
            lm_score=level_score(level_logits),
        )
        if labels is None:
            return out

        # Causal LM: position t predicts token t + 1; only answer tokens have labels.
        targets = labels[:, 1:]  # [B, T-1]
        answer = targets != IGNORE_INDEX
        picked = hidden[:, :-1][answer]  # [N, H]
        if picked.shape[0]:
            logits = self.lm_head()(picked).float()  # [N, V]
            out.lm_loss = F.cross_entropy(logits, targets[answer])
        else:
            out.lm_loss = hidden.sum() * 0.0
        loss = out.lm_loss
        if is_overall is not None:
            overall = is_overall.to(torch.bool)
            if score is not None:
                out.reg_loss = masked_mean((reg_score - score.float()) ** 2, overall)
                loss = loss + self.config.reg_weight * out.reg_loss
            if dimension_scores is not None:
                per_sample = ((expert_scores - dimension_scores.float()) ** 2).mean(-1)  # [B]
                out.exp_loss = masked_mean(per_sample, ~overall)
                loss = loss + self.config.exp_weight * out.exp_loss
        out.loss = loss
        return out

    # -- inference ---------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> Prediction:
        """Head scores and the MetaVoter's score for a batch from ``collate_inference``.

        The vision tower runs once per image; its features fill the image tokens of all its
        prompts. With several questions per image (``batch["questions"]`` = Q), each head's
        score is the mean over the Q paraphrases, and the MetaVoter votes on those means. Call
        in eval mode (dropout off, BatchNorm on running statistics).
        """
        device = self.level_token_ids.device
        ids = batch["input_ids"].to(device)  # [2QB, T]
        mask = batch["attention_mask"].to(device)
        q = batch.get("questions", 1)
        n = batch["level_pos"].shape[0] // q  # B images
        trunk = self.base_model.model
        dtype = next(self.base_model.parameters()).dtype
        pixels = batch["pixel_values"].to(device, dtype)
        feats = trunk.get_image_features(pixel_values=pixels).pooler_output  # [tiles, n_tok, H]
        # Every block of B sequences (one per question and kind) holds the images in order.
        feats = torch.cat([feats] * (2 * q)).reshape(-1, feats.shape[-1])
        embeds = trunk.get_input_embeddings()(ids)  # [2QB, T, H]
        image_slots = (ids == self.base_model.config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(image_slots, feats.to(embeds.dtype))
        hidden = trunk(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        rows = torch.arange(2 * q * n, device=device)
        at_head = hidden[rows, batch["head_pos"].to(device)]  # [2QB, H]
        reg, _ = self._heads(at_head[: q * n])  # [QB]
        _, dims = self._heads(at_head[q * n :])  # [QB, 12]
        level_at = hidden[rows[: q * n], batch["level_pos"].to(device)]  # [QB, H]
        lm = level_score(self.level_logits(level_at))  # [QB]
        # [QB] -> [Q, B] -> mean over the paraphrases -> [B]
        reg = reg.reshape(q, n).mean(0)
        lm = lm.reshape(q, n).mean(0)
        dims = dims.reshape(q, n, -1).mean(0)  # [B, 12]
        expert = dims[:, self.root_index]
        with torch.autocast(device.type, enabled=False):
            voted = self.metavoter(torch.stack([lm, reg, expert], dim=-1).float())
        scores = {"lm": lm, "regression": reg, "expert": expert, "metavoter": voted}
        return Prediction(
            lm=lm.cpu(),
            regression=reg.cpu(),
            expert=expert.cpu(),
            metavoter=voted.cpu(),
            dimensions=dims.cpu(),
            overall=scores[self.config.overall_from].cpu(),
        )

    @torch.no_grad()
    def generate_answers(
        self,
        prompts: list[list[int]],
        pixel_values: torch.Tensor,
        *,
        pad_id: int,
        eos_id: int | None,
        max_new_tokens: int,
    ) -> list[list[int]]:
        """Greedy text answers (token ids, without the prompt) to one prompt per image.

        ``pixel_values`` holds every image's tiles in prompt order, as in the batches.
        """
        device = self.level_token_ids.device
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding, so every answer starts at `length`
            ids[i, length - len(p) :] = torch.tensor(p)
            mask[i, length - len(p) :] = 1
        dtype = next(self.base_model.parameters()).dtype
        out = self.base_model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pixel_values=pixel_values.to(device, dtype),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        )
        answers = []
        for row in out[:, length:].tolist():
            if eos_id is not None and eos_id in row:
                row = row[: row.index(eos_id)]
            answers.append([t for t in row if t != pad_id])
        return answers


def load_for_inference(
    folder: str | os.PathLike[str],
    *,
    base: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    max_tiles: int | None = None,
) -> tuple[HumanAesExpert, SampleEncoder]:
    """A trained model in eval mode on ``device`` and the encoder saved beside it."""
    from transformers import AutoImageProcessor, AutoTokenizer

    model = HumanAesExpert.from_pretrained(folder, base=base, dtype=dtype).to(device)
    # Another tiling for inference only: the copy checks it; the model keeps what it trained on.
    tiles = model.config.max_tiles if max_tiles is None else max_tiles
    cfg = dataclasses.replace(model.config, max_tiles=tiles)
    source = folder if (Path(folder) / "tokenizer_config.json").is_file() else cfg.base_model
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    level_ids = check_level_tokens(tokenizer)
    if level_ids != list(cfg.level_token_ids):
        raise ValueError(
            f"{folder}: the tokenizer's level tokens {level_ids} differ from the "
            f"checkpoint's {cfg.level_token_ids}; wrong tokenizer or base model?"
        )
    encoder = SampleEncoder.from_config(
        cfg, tokenizer, AutoImageProcessor.from_pretrained(str(source))
    )
    return model, encoder


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}
