"""A tiny random InternVL checkpoint, built offline, for tests and the demo.

``python -m hae_model.tiny --output DIR`` writes a folder that loads like a real InternVL
checkpoint (``AutoModelForImageTextToText``, ``AutoTokenizer``, ``AutoImageProcessor``):

- the model: transformers' native ``InternVLForConditionalGeneration`` (no remote code) with a
  2-layer vision tower and a 2-layer Qwen2 language model, randomly initialised;
- the tokenizer: a byte-level BPE trained here on the standard's questions and answers (so every
  level word is one token, as the model requires) with InternVL's image tokens and a Qwen-style
  chat template, wrapped in ``PreTrainedTokenizerFast``;
- the image processor: ``GotOcr2ImageProcessorPil`` (InternVL's, in its PIL flavour: it needs no
  torchvision) with small tiles (56 px by default), so CPU tests are fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from annotation_schema import load_standard

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["build_tiny", "main"]

log = logging.getLogger(__name__)

_SPECIALS = {
    "pad": "<|endoftext|>",
    "turn_start": "<|im_start|>",
    "eos": "<|im_end|>",
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# Qwen2-style turns; the image item renders as the single placeholder that the encoder expands.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Every prompt and answer the standard can produce, plus the dimension names."""
    std = load_standard()
    lines = [*std.overall_questions, *std.fine_grained_questions]
    lines += [std.overall_answer(w) for w in std.level_words]
    for w in std.level_words:
        lines.append(std.fine_grained_answer([w] * len(std.dimensions)))
    lines += ["user", "assistant", "system", *std.names]
    return lines


def build_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process, with InternVL's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(_SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repetition makes every word of the standard a merge, so level words end up single tokens.
    bpe.train_from_iterator(_corpus() * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=_SPECIALS["eos"],
        pad_token=_SPECIALS["pad"],
        additional_special_tokens=[_SPECIALS["turn_start"]],
        extra_special_tokens={
            k: _SPECIALS[k]
            for k in ("start_image_token", "end_image_token", "context_image_token", "video_token")
        },
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def build_tiny(
    output: str | os.PathLike[str],
    *,
    seed: int = 0,
    tile_size: int = 56,
    patch_size: int = 14,
    text_hidden: int = 64,
    text_layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 2,
) -> Path:
    """Build and save the tiny checkpoint into ``output``; returns the folder."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        GotOcr2ImageProcessorPil,
    )

    from hae_model.processing import check_level_tokens

    if tile_size % (2 * patch_size):
        raise ValueError(f"tile_size {tile_size} must be a multiple of 2 * patch_size")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    check_level_tokens(tokenizer)
    image_seq_length = (tile_size // patch_size) ** 2 // 4  # pixel shuffle, ratio 0.5
    torch.manual_seed(seed)
    config = InternVLConfig(
        vision_config={
            "hidden_size": vision_hidden,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 2,
            "intermediate_size": 2 * vision_hidden,
            "image_size": tile_size,
            "patch_size": patch_size,
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": text_hidden,
            "num_hidden_layers": text_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 2 * text_hidden,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=image_seq_length,
        tie_word_embeddings=False,
    )
    model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    GotOcr2ImageProcessorPil(
        size={"height": tile_size, "width": tile_size},
        crop_to_patches=False,
        max_patches=12,
        # InternVL normalises with the ImageNet statistics (GotOcr2's default is CLIP's).
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny InternVL (%d parameters, %d px tiles) saved to %s", n_params, tile_size, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m hae_model.tiny",
        description="Build a tiny random InternVL checkpoint (model, tokenizer, image "
        "processor) for tests and the demo. Offline; takes about a second.",
    )
    parser.add_argument("--output", required=True, type=Path, help="folder to write")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    parser.add_argument(
        "--tile-size", type=int, default=56, help="tile side in pixels (multiple of 28)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tile_size <= 0 or args.tile_size % 28:
        parser.error("--tile-size must be a positive multiple of 28")
    build_tiny(args.output, seed=args.seed, tile_size=args.tile_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
