"""Training-step benchmark: the project's step against a bare transformers step of the same
backbone on the same batch, in the same run.

- ``bare``: the peer. The backbone with the same LoRA adapter (peft), ``model(..., labels=...)``
  (transformers' own loss over full-vocabulary logits), backward, clipping, AdamW.
- ``project``: ``HumanAesExpert.forward`` (answer-token-only LM loss, regression and Expert
  heads with the per-sample switch), backward, clipping, AdamW: what ``hae_model.train`` runs.
- ``project+compile`` (``--compile``): the same with the backbone trunk through torch.compile;
  ``bare+compile`` (``--compile-bare``) compiles the peer too, for reference.

The batch is half overall and half 12-dimension samples, encoded by the project's encoder from
generated photos (``--image-size``, tiled up to ``--max-tiles``). Variants run in alternating
rounds so that load from other processes hits all of them alike; the median round is reported.
Memory: "step memory" is the peak during a variant's steps above what was resident before them
(models, optimiser state): the CUDA allocator's peak on a GPU, the process's resident set
(sampled every millisecond) on the CPU; "peak" is the absolute value.

    python bench/train.py                                   # tiny InternVL, CPU
    python bench/train.py --compile
    python bench/train.py --shape internvl2-1b --batch-size 16 --max-tiles 1   # GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hae_model.model import HumanAesExpert
from hae_model.processing import collate_train
from hae_model.train import MODEL_INPUTS

SHAPES = ("tiny", "internvl2-1b")


def internvl2_1b_config(image_token_id: int):
    """The InternVL2-1B architecture (InternViT-300M-448px + Qwen2-0.5B, untied LM head,
    938,158,976 parameters), from its published shape; weights are random."""
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config={
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
            "image_size": 448,
            "patch_size": 14,
            "attention_bias": True,
            "use_qk_norm": False,
            "norm_type": "layer_norm",
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": 896,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "intermediate_size": 4864,
            "vocab_size": 151655,
            "rope_theta": 1_000_000.0,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
        },
        image_token_id=image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def build(args: argparse.Namespace, device: torch.device):
    """``(project model, encoder, bare peft model)`` with identical backbone and LoRA weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        InternVLForConditionalGeneration,
    )
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        GotOcr2ImageProcessorPil,
    )

    from hae_model.tiny import build_tiny, build_tokenizer

    torch.manual_seed(args.seed)
    if args.shape == "tiny":
        folder = Path(tempfile.mkdtemp(prefix="bench-tiny-"))
        build_tiny(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        processor = AutoImageProcessor.from_pretrained(folder)
        backbone = InternVLForConditionalGeneration.from_pretrained(folder)
    else:
        tokenizer = build_tokenizer()
        processor = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448})
        config = internvl2_1b_config(tokenizer.context_image_token_id)
        config._attn_implementation = "sdpa"
        with torch.device(device):
            backbone = InternVLForConditionalGeneration(config)
    backbone.to(device)
    bare_backbone = copy.deepcopy(backbone)
    model, encoder = HumanAesExpert.from_backbone(
        backbone, tokenizer, processor, args.shape, max_tiles=args.max_tiles
    )
    lora = LoraConfig(
        r=model.config.lora_r,
        lora_alpha=model.config.lora_alpha,
        lora_dropout=model.config.lora_dropout,
        target_modules=model.config.lora_target_modules,
        bias="none",
    )
    bare = get_peft_model(bare_backbone, lora)
    # Same LoRA weights in both (fresh B matrices are zero; random ones exercise the adapter).
    with torch.no_grad():
        theirs = dict(bare.named_parameters())
        for name, p in model.backbone.named_parameters():
            if "lora_" in name:
                if "lora_B" in name:
                    p.normal_(0, 0.02)
                theirs[name].copy_(p)
    model.metavoter.requires_grad_(False)
    model.to(device).train()
    bare.to(device).train()
    return model, encoder, bare


def make_batch(encoder, args: argparse.Namespace) -> dict:
    """``args.batch_size`` samples, half overall and half 12-dimension, from generated photos."""
    import io

    from PIL import Image

    std = encoder.standard
    rng = np.random.default_rng(args.seed)
    w, h = args.image_size
    samples = []
    for i in range(args.batch_size):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        png = io.BytesIO()
        Image.fromarray(arr).save(png, "PNG")
        mean = float(arr.mean() / 255)
        overall = i % 2 == 0
        level = std.level_words[min(4, int(mean * 5))]
        row = {
            "image": {"bytes": png.getvalue()},
            "image_id": f"bench-{i}",
            "source": "bench",
            "part": "overall" if overall else "fine_grained",
            "score": mean,
            "level": level,
            "question": (std.overall_questions if overall else std.fine_grained_questions)[0],
            "answer": std.overall_answer(level)
            if overall
            else std.fine_grained_answer([level] * len(std.dimensions)),
            "dimension_scores": None if overall else [mean] * len(std.dimensions),
        }
        samples.append(encoder.encode_train(row))
    return collate_train(samples, encoder.pad_id)


def encode_rate(encoder, args: argparse.Namespace, n: int = 16) -> float:
    """Samples/s of decoding a JPEG, tiling and tokenising, on one CPU thread (one worker)."""
    import io

    from PIL import Image

    std = encoder.standard
    rng = np.random.default_rng(args.seed)
    w, h = args.image_size
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    row = {
        "image": {"bytes": buf.getvalue()},
        "image_id": "bench",
        "source": "bench",
        "part": "overall",
        "score": 0.5,
        "level": "fair",
        "question": std.overall_questions[0],
        "answer": std.overall_answer("fair"),
        "dimension_scores": None,
    }
    encoder.encode_train(row)
    start = time.perf_counter()
    for _ in range(n):
        encoder.encode_train(row)
    return n / (time.perf_counter() - start)


def step_fns(model, bare, batch, device, amp, clip=1.0):
    """One optimiser step per variant, on tensors already on ``device``."""
    inputs = {k: batch[k].to(device) for k in MODEL_INPUTS}
    bare_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    bare_inputs["labels"] = inputs["labels"]

    def make(module, params, forward):
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)

        def step():
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = forward()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        return step

    project_params = [p for p in model.parameters() if p.requires_grad]
    bare_params = [p for p in bare.parameters() if p.requires_grad]
    return {
        "project": make(model, project_params, lambda: model(**inputs).loss),
        "bare": make(bare, bare_params, lambda: bare(**bare_inputs).loss),
    }


class _RssSampler:
    """Peak resident memory of this process while a variant runs (CPU runs), sampled every ms."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def start(self) -> int:
        now = self.rss()
        self.peak = now
        self._thread.start()
        return now

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.rss())


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    amp = torch.bfloat16 if args.precision == "bf16" else None
    model, encoder, bare = build(args, device)
    batch = make_batch(encoder, args)
    tiles = int(batch["pixel_values"].shape[0]) / args.batch_size
    steps = step_fns(model, bare, batch, device, amp)
    variants = ["bare", "project"]
    if args.compile_bare:
        steps["bare+compile"] = steps["bare"]
        variants.insert(1, "bare+compile")
    if args.compile:
        steps["project+compile"] = steps["project"]
        variants.append("project+compile")
    results: dict[str, dict] = {v: {"rates": []} for v in variants}
    bare_outer = bare.get_base_model()
    bare_eager = bare_outer.model
    compiled: dict[str, torch.nn.Module] = {}

    def select(v: str) -> None:
        # A variant and its "+compile" twin share model and optimiser; only the trunk differs.
        if v == "project+compile" and v not in compiled:
            model.compile_backbone()
            compiled[v] = model._trunk
        if v == "bare+compile" and v not in compiled:
            import torch._dynamo

            torch._dynamo.config.capture_scalar_outputs = True
            compiled[v] = torch.compile(bare_eager)
        model._trunk = compiled.get("project+compile") if v == "project+compile" else None
        bare_outer.model = compiled["bare+compile"] if v == "bare+compile" else bare_eager

    # Warm-up (and compilation) per variant, outside the timed rounds.
    for v in variants:
        select(v)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            steps[v]()
        _sync(device)
        results[v]["warmup_s"] = time.perf_counter() - t0
    for _ in range(args.rounds):
        for v in variants:
            select(v)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            else:
                sampler = _RssSampler()
                resident = sampler.start()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[v]()
            _sync(device)
            results[v]["rates"].append(args.batch_size * args.steps / (time.perf_counter() - t0))
            peak = (
                torch.cuda.max_memory_allocated(device) if device.type == "cuda" else sampler.stop()
            )
            r = results[v]
            r["step_mem_mib"] = max(r.get("step_mem_mib", 0.0), (peak - resident) / 2**20)
            r["peak_mib"] = max(r.get("peak_mib", 0.0), peak / 2**20)
    for r in results.values():
        r["samples_per_s"] = statistics.median(r["rates"])
    return {
        "tiles_per_image": tiles,
        "seq_len": int(batch["input_ids"].shape[1]),
        "encode_samples_per_s": encode_rate(encoder, args),
        "variants": results,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shape", choices=SHAPES, default="tiny")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tiles", type=int, default=1)
    p.add_argument("--image-size", default="640x480", help="WxH of the generated photos")
    p.add_argument("--steps", type=int, default=10, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time the compiled project step")
    p.add_argument("--compile-bare", action="store_true", help="compile the bare step too")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write results here ('-': stdout)")
    args = p.parse_args()
    try:
        args.image_size = tuple(int(x) for x in args.image_size.lower().split("x"))
        assert len(args.image_size) == 2 and min(args.image_size) > 0
    except (ValueError, AssertionError):
        p.error("--image-size must look like 640x480")
    if min(args.batch_size, args.max_tiles, args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--batch-size, --max-tiles, --steps and --rounds must be >= 1")
    if args.precision == "auto":
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    res = measure(args)
    res["setup"] = {
        "shape": args.shape,
        "device": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or "cpu",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_tiles": args.max_tiles,
        "image_size": list(args.image_size),
        "precision": args.precision,
        "torch": torch.__version__,
        "date": date.today().isoformat(),
        "command": "python " + " ".join([os.path.relpath(__file__), *sys.argv[1:]]),
    }
    if args.json == "-":
        sys.stdout.write(json.dumps(res) + "\n")
        return 0
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    base = res["variants"][next(v for v in res["variants"] if v.startswith("bare"))]
    print(f"\n{res['setup']['command']}")
    print(
        f"shape {args.shape}, batch {args.batch_size}, {res['tiles_per_image']:g} tiles/image, "
        f"{res['seq_len']} tokens, {args.precision}, {args.threads} threads, "
        f"device {res['setup']['device']}"
    )
    print(
        "\n| step | samples/s (median) | rounds | vs bare | step memory MiB | peak MiB "
        "| warm-up s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, r in res["variants"].items():
        rounds = ", ".join(f"{x:.3g}" for x in r["rates"])
        print(
            f"| {name} | {r['samples_per_s']:.3g} | {rounds} | "
            f"{r['samples_per_s'] / base['samples_per_s']:.2f}x | {r.get('step_mem_mib', 0):.0f} | "
            f"{r.get('peak_mib', 0):.0f} | {r['warmup_s']:.1f} |"
        )
    print(
        "\nencoder (decode + tile + tokenise, one thread): "
        f"{res['encode_samples_per_s']:.0f} samples/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
