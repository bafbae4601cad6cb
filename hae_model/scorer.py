"""The Python scorer: load a trained model once, score paths and PIL images in batches.

    from hae_model import load_scorer

    scorer = load_scorer("out/model")  # or a Hub id: load_scorer("org/name")
    results = scorer(["a.jpg", pil_image])

Each result has the keys of ``python -m hae_model.score --json``: ``image`` (the path, or
``<image N>`` for the N-th input when it is a PIL image), ``image_id``, ``overall`` (the
MetaVoter's score, or one head's when training found the MetaVoter worse than that head),
``overall_from``, the 12 dimension scores by name (``dimensions``), the three head scores and the
MetaVoter's (``heads``), the level of every score (``levels``), ``scale`` and, with text, the
model's own ``answer`` and ``fine_grained_answer``. Scores are on 0-1 (``scale="unit"``) or on
the paper's 1-5 MOS scale (``scale="five"``: ``1 + 4 * score``); levels are the same on both.

An image that cannot be used (a missing or corrupt file, a PIL image in a mode that does not
convert to RGB) becomes ``{"image": ..., "error": ...}`` and the others are still scored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from annotation_schema import load_standard
from hae_data.hashing import content_id
from hae_data.images import ImageDecodeError, expand_paths, read_image
from hae_model.config import OVERALL_SOURCES, resolve_dtype
from hae_model.inference import (
    INFERENCE_BATCH_SIZE,
    SCALES,
    autocast,
    autocast_dtype,
    check_inference_options,
    levels_of,
    resolve_device,
    score_batches,
)
from hae_model.model import HumanAesExpert
from hae_model.processing import SampleEncoder, collate_inference

__all__ = ["SCALES", "ImageInput", "Scorer", "find_images", "load_scorer"]

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike[str] | Image.Image


def find_images(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every path as given, except folders: those become their image files (recursively, by
    suffix, sorted; see :func:`hae_data.images.expand_paths`). A path that does not exist
    stays, to be reported as an error."""
    return [str(p) for p in expand_paths([Path(p) for p in paths])[0]]


def _rescale(x: float, scale: str) -> float:
    return 1.0 + 4.0 * x if scale == "five" else x


def _pil_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy the image processor can use, or :class:`ImageDecodeError`."""
    try:
        image.load()
        if image.mode == "RGB":
            return image
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info
        ):
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        if image.mode.startswith("I;16"):
            grey = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
            return Image.fromarray(np.rint(grey).astype(np.uint8), mode="L").convert("RGB")
        if image.mode in ("I", "F"):
            # 32-bit pixels have no agreed range (0-1? 0-255? 0-65535?): ask, never guess.
            raise ValueError(f"mode {image.mode} has no known range; convert it to RGB first")
        return image.convert("RGB")
    except Exception as exc:  # PIL raises many types for a mode it cannot convert
        raise ImageDecodeError("unusable_image", f"{type(exc).__name__}: {exc}") from exc


class Scorer:
    """A loaded model and its encoder; call it with images (see the module docstring)."""

    def __init__(
        self,
        model: HumanAesExpert,
        encoder: SampleEncoder,
        *,
        device: torch.device,
        precision: str = "auto",
        text: bool = True,
        questions: str = "canonical",
        batch_size: int = INFERENCE_BATCH_SIZE,
        scale: str = "unit",
    ) -> None:
        check_inference_options(
            precision=precision, questions=questions, batch_size=batch_size, scale=scale
        )
        self.model = model
        self.encoder = encoder
        self.device = device
        self.autocast_dtype = autocast_dtype(precision, device)
        self.text = text
        self.questions = questions
        self.batch_size = batch_size
        self.scale = scale
        self.names = load_standard().names

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[dict[str, Any]]:
        """One result dict per image, in order."""
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        return list(self.iter_scores(images))

    def iter_scores(self, images: Iterable[ImageInput]) -> Iterator[dict[str, Any]]:
        """Results as each batch is scored (for long lists: nothing waits for the last one)."""
        chunk: list[tuple[str, ImageInput]] = []
        for i, image in enumerate(images):
            label = f"<image {i}>" if isinstance(image, Image.Image) else str(image)
            chunk.append((label, image))
            if len(chunk) == self.batch_size:
                yield from self._score_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._score_chunk(chunk)

    def _sample(self, label: str, image: ImageInput) -> dict[str, Any]:
        try:
            if isinstance(image, Image.Image):
                rgb = _pil_rgb(image)
                image_id = content_id(rgb.tobytes())
            else:
                decoded = read_image(image)
                rgb, image_id = decoded.image, decoded.image_id
        except ImageDecodeError as exc:
            return {"image_id": None, "error": f"{exc.reason}: {exc.detail}"}
        row = {"image": rgb, "image_id": image_id, "source": label}
        return self.encoder.encode_inference(row, self.questions)

    def _score_chunk(self, chunk: list[tuple[str, ImageInput]]) -> Iterator[dict[str, Any]]:
        samples = [self._sample(label, image) for label, image in chunk]
        batch = collate_inference(samples, self.encoder.pad_id)
        batch["errors"] = []  # reported below, in input order
        ctx = autocast(self.device, self.autocast_dtype)
        with torch.inference_mode():
            scored = score_batches(
                self.model, self.encoder, [batch], device=self.device, autocast=ctx, text=self.text
            )
            results = iter(list(scored))
        for (label, _), sample in zip(chunk, samples, strict=True):
            if "error" in sample:
                yield {"image": label, "error": sample["error"]}
            else:
                yield self._result(label, next(results))

    def _result(self, label: str, item: dict[str, Any]) -> dict[str, Any]:
        s = self.scale
        levels = levels_of(item)
        out: dict[str, Any] = {
            "image": label,
            "image_id": item["image_id"],
            "overall": _rescale(item["overall"], s),
            "overall_from": self.model.config.overall_from,
            "dimensions": {
                name: _rescale(v, s) for name, v in zip(self.names, item["dimensions"], strict=True)
            },
            "heads": {k: _rescale(item[k], s) for k in OVERALL_SOURCES},
            "levels": {"overall": levels["overall"], **{n: levels[n] for n in self.names}},
            "scale": s,
        }
        if self.text:
            out["answer"] = item["answer"]
            out["fine_grained_answer"] = item["fine_grained_answer"]
        return out


def load_scorer(
    model: str | os.PathLike[str],
    *,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    precision: str = "auto",
    text: bool = True,
    questions: str = "canonical",
    batch_size: int = INFERENCE_BATCH_SIZE,
    scale: str = "unit",
    base: str | None = None,
    max_tiles: int | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Scorer:
    """Load the trained model at ``model`` (a folder written by ``hae_model.train`` or a Hub
    model id) once, for scoring any number of images.

    ``device``: ``auto`` (the first GPU, else the CPU), ``cpu``, ``cuda:N``; ``dtype``: the
    backbone's weights, ``auto`` (bfloat16 on a GPU that supports it, else float32),
    ``float32``, ``bfloat16``, ``float16`` or a ``torch.dtype`` (the heads stay float32);
    ``text=False`` skips generating the text answers (much faster); ``questions``: see
    :meth:`hae_model.processing.SampleEncoder.inference_questions`; ``scale``: ``unit`` or ``five``;
    ``revision`` and ``cache_dir`` for a Hub id (see :func:`hae_model.model_hub.resolve_model`).
    Bad arguments raise ``ValueError`` before the model is loaded.
    """
    from hae_model.model import load_for_inference
    from hae_model.model_hub import resolve_model

    dev = resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, dev)
    check_inference_options(
        precision=precision,
        questions=questions,
        batch_size=batch_size,
        max_tiles=max_tiles,
        scale=scale,
    )
    folder = resolve_model(model, revision=revision, cache_dir=cache_dir)
    net, encoder = load_for_inference(
        folder, base=base, device=dev, dtype=torch_dtype, max_tiles=max_tiles
    )
    log.info("loaded %s on %s (backbone %s)", model, dev, torch_dtype)
    return Scorer(
        net,
        encoder,
        device=dev,
        precision=precision,
        text=text,
        questions=questions,
        batch_size=batch_size,
        scale=scale,
    )
