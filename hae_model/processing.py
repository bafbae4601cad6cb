"""Processing: from an exported row (or an image) to model tensors, and back to batches.

Following transformers' split of configuration / modeling / processing, this module is what
``hae_model.model``, ``hae_model.data`` (the training and scoring streams) and
``hae_model.inference`` share:

- :func:`check_level_tokens`: the five level words must each be one token right after the
  overall answer prefix (the LM-head score reads the next-token logits there);
- :class:`SampleEncoder`: InternVL tiles, the prompt built by hand (``<img>`` +
  ``image_seq_length * tiles`` x ``<IMG_CONTEXT>`` + ``</img>``, then the question, inside the
  backbone's chat template when it has one), and labels masked to the answer tokens
  (:data:`IGNORE_INDEX` elsewhere);
- :func:`collate_train` and :func:`collate_inference`: pad samples into batches.

Positions the heads read (SPEC 3.1): ``head_pos`` is the last prompt token, just before the
answer; ``level_pos`` is the token before the level word of an overall answer (the last token
of the answer prefix), where the LM head's next-token logits give the level-word score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from annotation_schema import Standard, load_standard
from hae_data.images import ImageDecodeError, decode_image
from hae_data.records import PARTS
from hae_model.config import HAEConfig

__all__ = [
    "IGNORE_INDEX",
    "INFERENCE_QUESTIONS",
    "TARGETS",
    "LevelTokenError",
    "SampleEncoder",
    "check_level_tokens",
    "collate_inference",
    "collate_train",
]

#: What evaluation compares against, per image, exactly as exported (SPEC 2.5).
TARGETS = ("score", "level", "dimension_scores", "dimension_levels")
#: ``--questions``: which question paraphrases inference asks (SPEC 2.6).
INFERENCE_QUESTIONS = ("canonical", "all")
IGNORE_INDEX = -100

# Special tokens of InternVL checkpoints; a tokenizer may name its own (``start_image_token``...).
_IMG_START, _IMG_END, _IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


class LevelTokenError(ValueError):
    """A level word is not one token of the backbone's tokenizer after the answer prefix."""


def check_level_tokens(tokenizer: Any, standard: Standard | None = None) -> list[int]:
    """Token ids of the five level words as they follow the overall answer prefix.

    The LM-head score reads the next-token logits after the prefix, so each overall answer must
    tokenize as ``prefix ids + [one level token] + ...``. Raises :class:`LevelTokenError`
    naming every level word that breaks this.
    """
    std = standard or load_standard()
    prefix = _ids(tokenizer, std.overall_prefix)
    n = len(prefix)
    fulls = {word: _ids(tokenizer, std.overall_answer(word)) for word in std.level_words}
    # A single-token word leaves the same tail (the full stop) after it in every answer.
    tails = [tuple(full[n + 1 :]) for full in fulls.values()]
    common_tail = max(set(tails), key=tails.count)
    ids, bad = [], []
    for word, full in fulls.items():
        if full[:n] != prefix or len(full) <= n or tuple(full[n + 1 :]) != common_tail:
            bad.append(f"{word!r} -> {tokenizer.convert_ids_to_tokens(full[n:])}")
            continue
        ids.append(full[n])
    if bad:
        raise LevelTokenError(
            "each level word must be a single token right after the answer prefix "
            f"{std.overall_prefix!r}, but the backbone's tokenizer splits: " + "; ".join(bad)
        )
    if len(set(ids)) != len(ids):
        raise LevelTokenError(f"level words share token ids: {ids}")
    return ids


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------
# Rows -> samples


class SampleEncoder:
    """Turns exported rows (or images) into model inputs for one backbone.

    ``tokenizer`` and ``image_processor`` are the backbone's (for InternVL the GotOcr2 image
    processor; its PIL flavour works without torchvision). ``image_seq_length`` is the number of
    image tokens per tile and ``tile_size`` the tile side in pixels; ``max_tiles`` is the
    dynamic-tiling maximum (1: one resized tile, no thumbnail), checked by :class:`HAEConfig`.
    ``level_token_ids``: what :func:`check_level_tokens` gave for this tokenizer, when the
    caller has already checked it (:meth:`from_config`); checked here otherwise.
    """

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        *,
        image_seq_length: int,
        tile_size: int,
        max_tiles: int,
        level_token_ids: Sequence[int] | None = None,
        standard: Standard | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_seq_length = image_seq_length
        self.tile_size = tile_size
        self.max_tiles = max_tiles
        self.standard = standard or load_standard()
        self.level_token_ids = (
            check_level_tokens(tokenizer, self.standard)
            if level_token_ids is None
            else list(level_token_ids)
        )
        self.prefix_ids = _ids(tokenizer, self.standard.overall_prefix)
        self.img_start = getattr(tokenizer, "start_image_token", None) or _IMG_START
        self.img_end = getattr(tokenizer, "end_image_token", None) or _IMG_END
        self.img_context = getattr(tokenizer, "context_image_token", None) or _IMG_CONTEXT
        for tok in (self.img_start, self.img_end, self.img_context):
            if len(_ids(tokenizer, tok)) != 1:
                raise ValueError(f"the tokenizer has no single token for {tok!r}")
        self.image_token_id = _ids(tokenizer, self.img_context)[0]
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self._prompt_cache: dict[tuple[str, int], list[int]] = {}

    @classmethod
    def from_config(cls, config: HAEConfig, tokenizer: Any, image_processor: Any) -> SampleEncoder:
        """The encoder of a model with ``config`` (its tiling and image tokens). The tokenizer
        must be the one ``config.level_token_ids`` were checked on (when the model was built, or
        by :func:`hae_model.model.load_for_inference`): they are not checked again."""
        return cls(
            tokenizer,
            image_processor,
            image_seq_length=config.image_seq_length,
            tile_size=config.tile_size,
            max_tiles=config.max_tiles,
            level_token_ids=config.level_token_ids,
        )

    # -- pieces -----------------------------------------------------------------------------

    def tiles(self, image: Any) -> torch.Tensor:
        """``[n_tiles, 3, tile, tile]`` pixel values of a PIL image (InternVL dynamic tiling)."""
        out = self.image_processor(
            images=[image],
            size={"height": self.tile_size, "width": self.tile_size},
            crop_to_patches=self.max_tiles > 1,
            min_patches=1,
            max_patches=self.max_tiles,
            return_tensors="pt",
        )
        return out["pixel_values"]

    def prompt_ids(self, question: str, n_tiles: int) -> list[int]:
        """Token ids of the prompt for ``question`` about an image of ``n_tiles`` tiles.

        With a chat template, the user turn is ``[image, question]`` followed by the generation
        prompt, and the template's single image placeholder becomes the image block; without
        one, the prompt is ``image block \\n question \\n``.
        """
        key = (question, n_tiles)
        cached = self._prompt_cache.get(key)
        if cached is not None:
            return cached
        block = self.img_start + self.img_context * (self.image_seq_length * n_tiles) + self.img_end
        if self.has_chat_template:
            text = self.tokenizer.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": question}],
                    }
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for placeholder in (self.img_context, "<image>"):
                if placeholder in text:
                    text = text.replace(placeholder, block, 1)
                    break
            else:
                text = block + "\n" + text
        else:
            text = f"{block}\n{question}\n"
        ids = _ids(self.tokenizer, text)
        n_image = sum(1 for i in ids if i == self.image_token_id)
        if n_image != self.image_seq_length * n_tiles:
            raise ValueError(
                f"prompt has {n_image} image tokens, expected {self.image_seq_length * n_tiles}"
            )
        self._prompt_cache[key] = ids
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an answer followed by the end-of-turn token."""
        ids = _ids(self.tokenizer, answer)
        return [*ids, self.eos_id] if self.eos_id is not None else ids

    def _decode(self, row: dict[str, Any]) -> Any:
        image = row.get("image") or {}
        data = image.get("bytes") if isinstance(image, dict) else None
        if not data:
            raise ImageDecodeError("missing_image", "the row has no image bytes")
        return decode_image(data, name=str(row.get("image_id"))).image

    # -- samples ----------------------------------------------------------------------------

    def encode_train(self, row: dict[str, Any]) -> dict[str, Any]:
        """One training sample from an exported row (or ``{"error": ...}`` for a bad row).

        Keys: ``input_ids``/``labels`` ``[T]`` (labels are -100 outside the answer),
        ``pixel_values [n, 3, S, S]``, ``head_pos``, ``level_pos`` (-1 when the answer has no
        level word after the prefix), ``is_overall``, ``score``, ``dimension_scores [12]``.
        """
        meta = {"image_id": row.get("image_id"), "source": row.get("source")}
        try:
            part = row.get("part")
            if part not in PARTS:
                raise ValueError(f"unknown part {part!r}")
            question, answer = row.get("question"), row.get("answer")
            if not question or not answer:
                raise ValueError("question or answer missing")
            score = _unit(row.get("score"), "score")
            n_dims = len(self.standard.dimensions)
            dims = row.get("dimension_scores")
            if part == "fine_grained":
                if dims is None or len(dims) != n_dims:
                    raise ValueError("a fine_grained row needs 12 dimension scores")
                dims = [_unit(v, "dimension score") for v in dims]
            else:
                dims = [0.0] * n_dims
            pixels = self.tiles(self._decode(row))
        except (ImageDecodeError, ValueError, TypeError) as exc:
            return {**meta, "error": f"{type(exc).__name__}: {exc}"}
        prompt = self.prompt_ids(question, pixels.shape[0])
        ans = self.answer_ids(answer)
        level_pos = -1
        level = row.get("level")
        if part == "overall" and level in self.standard.level_words:
            lvl_id = self.level_token_ids[self.standard.level_words.index(level)]
            n = len(self.prefix_ids)
            if ans[:n] == self.prefix_ids and len(ans) > n and ans[n] == lvl_id:
                level_pos = len(prompt) + n - 1
        return {
            **meta,
            "input_ids": torch.tensor(prompt + ans, dtype=torch.long),
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt) + ans, dtype=torch.long),
            "pixel_values": pixels,
            "head_pos": len(prompt) - 1,
            "level_pos": level_pos,
            "is_overall": part == "overall",
            "score": score,
            "dimension_scores": torch.tensor(dims, dtype=torch.float32),
        }

    def inference_questions(self, questions: str = "canonical") -> tuple[list[str], list[str]]:
        """The overall and the 12-dimension questions asked at inference (SPEC 2.6).

        ``canonical``: the first paraphrase of each, the same for every image, so an image's
        score never depends on its bytes (the training rows pick a paraphrase by a hash of the
        image id, which changes when a photo is re-encoded). ``all``: every paraphrase, whose
        scores :meth:`HumanAesExpert.predict` averages.
        """
        std = self.standard
        if questions == "canonical":
            return [std.overall_questions[0]], [std.fine_grained_questions[0]]
        if questions == "all":
            return list(std.overall_questions), list(std.fine_grained_questions)
        raise ValueError(
            f"questions must be one of {', '.join(INFERENCE_QUESTIONS)}, got {questions!r}"
        )

    def encode_inference(self, row: dict[str, Any], questions: str = "canonical") -> dict[str, Any]:
        """The scoring prompts of one image (SPEC 3.2), with the row's targets if any.

        For each question of :meth:`inference_questions` (index q): ``overall_ids[q]`` = overall
        prompt + answer prefix (its last prompt token feeds the regression head, its last token
        gives the level-word logits) and ``fine_prompts[q]`` = a 12-dimension prompt (its last
        token feeds the Expert head); ``overall_prompt`` / ``fine_prompt`` are the first ones,
        for text generation. ``row`` is an exported row, or ``{"image": PIL image,
        "image_id": ...}`` for a file being scored. The targets (``score``, ``level``,
        ``dimension_scores``, ``dimension_levels``) are the exported values as they are, never
        recomputed or narrowed to float32 (SPEC 2.5); ``None`` when the row has none.
        """
        meta = {
            "image_id": row.get("image_id"),
            "source": row.get("source"),
            "part": row.get("part"),
        }
        try:
            overall_qs, fine_qs = self.inference_questions(questions)
            image = row["image"]
            if isinstance(image, dict):
                image = self._decode(row)
            pixels = self.tiles(image)
            n_dims = len(self.standard.dimensions)
            score = row.get("score")
            score = None if score is None else _unit(score, "score")
            dims = row.get("dimension_scores")
            if dims is not None:
                dims = [_unit(v, "dimension") for v in dims]
                if len(dims) != n_dims:
                    raise ValueError(f"expected {n_dims} dimension scores, got {len(dims)}")
        except (ImageDecodeError, ValueError, TypeError, KeyError) as exc:
            return {**meta, "error": f"{type(exc).__name__}: {exc}"}
        n = pixels.shape[0]
        overall_prompts = [self.prompt_ids(q, n) for q in overall_qs]
        fine_prompts = [self.prompt_ids(q, n) for q in fine_qs]
        return {
            **meta,
            "pixel_values": pixels,
            "overall_prompts": overall_prompts,
            "fine_prompts": fine_prompts,
            "overall_ids": [p + self.prefix_ids for p in overall_prompts],
            "overall_prompt": overall_prompts[0],
            "fine_prompt": fine_prompts[0],
            "score": score,
            "level": row.get("level"),
            "dimension_scores": dims,
            "dimension_levels": row.get("dimension_levels"),
        }


def _unit(value: Any, what: str) -> float:
    """A float in [0, 1] or ``ValueError``."""
    if value is None:
        raise ValueError(f"{what} missing")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} {v!r} outside [0, 1]")
    return v


# ---------------------------------------------------------------------------------------------
# Batches


def _pad(
    seqs: Sequence[Sequence[int] | torch.Tensor], value: int, length: int, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = torch.as_tensor(s, dtype=torch.long)
        if left:
            out[i, length - len(s) :], mask[i, length - len(s) :] = s, 1
        else:
            out[i, : len(s)], mask[i, : len(s)] = s, 1
    return out, mask


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple) if multiple > 1 else n


def collate_train(
    samples: Sequence[dict[str, Any]], pad_id: int, pad_to_multiple: int = 8
) -> dict[str, Any]:
    """Right-padded training batch: the tensors ``HumanAesExpert.forward`` takes, plus ``meta``.

    ``pixel_values`` concatenates every sample's tiles in sample order ``[sum n_i, 3, S, S]``;
    lengths are padded to a multiple of ``pad_to_multiple`` so compiled graphs see few shapes.
    """
    samples = [s for s in samples if "error" not in s]
    if not samples:
        raise ValueError("a training batch needs at least one valid sample")
    length = _round_up(max(len(s["input_ids"]) for s in samples), pad_to_multiple)
    input_ids, attention_mask = _pad([s["input_ids"] for s in samples], pad_id, length)
    labels, _ = _pad([s["labels"] for s in samples], IGNORE_INDEX, length)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values": torch.cat([s["pixel_values"] for s in samples]),
        "head_pos": torch.tensor([s["head_pos"] for s in samples], dtype=torch.long),
        "level_pos": torch.tensor([s["level_pos"] for s in samples], dtype=torch.long),
        "is_overall": torch.tensor([s["is_overall"] for s in samples], dtype=torch.bool),
        "score": torch.tensor([s["score"] for s in samples], dtype=torch.float32),
        "dimension_scores": torch.stack([s["dimension_scores"] for s in samples]),
        "meta": {
            "image_id": [s["image_id"] for s in samples],
            "source": [s["source"] for s in samples],
        },
    }


def collate_inference(
    samples: Sequence[dict[str, Any]], pad_id: int, pad_to_multiple: int = 8
) -> dict[str, Any]:
    """Scoring batch of B images asked Q questions each (Q = 1 for the canonical question).

    ``input_ids [2QB, T]`` holds Q blocks of the B overall prompts (with the answer prefix),
    one block per question, then Q blocks of the B 12-dimension prompts, right-padded;
    ``head_pos [2QB]`` is the last prompt token of each sequence and ``level_pos [QB]`` the
    last token of each overall sequence. ``targets`` keeps each row's exported values as they
    are (see :meth:`SampleEncoder.encode_inference`).

    Bad samples go to ``errors``; ``size`` is the number of valid images (0 is possible).
    """
    errors = [s for s in samples if "error" in s]
    good = [s for s in samples if "error" not in s]
    batch: dict[str, Any] = {
        "size": len(good),
        "errors": [
            {"image_id": s.get("image_id"), "source": s.get("source"), "error": s["error"]}
            for s in errors
        ],
    }
    if not good:
        return batch
    n_questions = len(good[0]["overall_ids"])
    if any(len(s["overall_ids"]) != n_questions for s in good):
        raise ValueError("every image of a batch must be asked the same questions")
    # Block q holds question q of every image, so image i's sequences sit at q * B + i.
    overall = [s["overall_ids"][q] for q in range(n_questions) for s in good]
    overall_prompt = [s["overall_prompts"][q] for q in range(n_questions) for s in good]
    fine = [s["fine_prompts"][q] for q in range(n_questions) for s in good]
    seqs = overall + fine
    length = _round_up(max(len(s) for s in seqs), pad_to_multiple)
    input_ids, attention_mask = _pad(seqs, pad_id, length)
    batch.update(
        {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": torch.cat([s["pixel_values"] for s in good]),
            "tiles": torch.tensor([s["pixel_values"].shape[0] for s in good], dtype=torch.long),
            "questions": n_questions,
            "head_pos": torch.tensor(
                [len(p) - 1 for p in overall_prompt] + [len(p) - 1 for p in fine],
                dtype=torch.long,
            ),
            "level_pos": torch.tensor([len(s) - 1 for s in overall], dtype=torch.long),
            "overall_prompt": [s["overall_prompt"] for s in good],
            "fine_prompt": [s["fine_prompt"] for s in good],
            "meta": {k: [s.get(k) for s in good] for k in ("image_id", "source", "part")},
            "targets": [{k: s[k] for k in TARGETS} for s in good],
        }
    )
    return batch
