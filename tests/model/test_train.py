import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from hae_model.config import DTYPES, resolve_dtype
from hae_model.data import ShardStream, list_row_groups
from hae_model.evaluate import evaluate
from hae_model.evaluate import main as evaluate_main
from hae_model.metavoter import in_holdout
from hae_model.score import main as score_main
from hae_model.tiny import main as tiny_main
from hae_model.train import TrainConfig, cosine_with_warmup, train
from hae_model.train import main as train_main
from tests.model.fixtures import make_export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}


def _run(args, timeout=240):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_cosine_schedule_with_warmup():
    lr = [cosine_with_warmup(s, total=100, warmup=5) for s in range(100)]
    assert lr[0] == pytest.approx(0.2) and lr[4] == pytest.approx(1.0)
    assert lr[5] == pytest.approx(1.0) and lr[52] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in itertools.pairwise(lr[5:]))
    assert cosine_with_warmup(100, total=100, warmup=5) == pytest.approx(0.0)


def _cfg(data, base, out, **kw):
    values = dict(
        data=str(data),
        base=str(base),
        output=str(out),
        max_tiles=1,
        batch_size=4,
        grad_accum=2,
        num_workers=0,
        log_every=1,
        save_every=2,
        metavoter_min_steps=20,
        seed=0,
    )
    values.update(kw)
    return TrainConfig(**values)


STEPS = 12  # of the uninterrupted run that resumed runs are compared with


@pytest.fixture(scope="module")
def straight(tiny_dir, small_export, tmp_path_factory):
    """An uninterrupted run of STEPS steps with a checkpoint every 4 (the last 2 kept)."""
    out = tmp_path_factory.mktemp("straight")
    train(_cfg(small_export, tiny_dir, out, max_steps=STEPS, save_every=4))
    return out


def _assert_same_weights(a, b):
    final = load_file(str(a / "checkpoints" / f"step-{STEPS:07d}" / "trainable.safetensors"))
    again = load_file(str(b / "checkpoints" / f"step-{STEPS:07d}" / "trainable.safetensors"))
    assert final.keys() == again.keys()
    for name in final:
        assert torch.allclose(final[name], again[name], atol=1e-6), name


def test_resume_continues_exactly(tiny_dir, small_export, straight, tmp_path):
    # A run that stopped after its step-8 checkpoint and was started again with --resume.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(
        straight / "checkpoints" / "step-0000008", resumed / "checkpoints" / "step-0000008"
    )
    train(_cfg(small_export, tiny_dir, resumed, max_steps=STEPS, save_every=4, resume=True))
    _assert_same_weights(straight, resumed)
    state = json.loads((resumed / "checkpoints" / f"step-{STEPS:07d}" / "state.json").read_text())
    assert state["step"] == STEPS and state["micro_batches"] == 2 * STEPS
    assert len(list((straight / "checkpoints").iterdir())) == 2  # keep_checkpoints
    with pytest.raises(ValueError, match="pass --resume"):
        train(_cfg(small_export, tiny_dir, straight, max_steps=STEPS))


def test_sigterm_saves_a_checkpoint_and_resume_stays_exact(
    tiny_dir, small_export, straight, tmp_path
):
    out = tmp_path / "stopped"
    args = ["--data", str(small_export), "--base", str(tiny_dir), "--output", str(out)]
    args += ["--max-tiles", "1", "--batch-size", "4", "--grad-accum", "2", "--num-workers", "0"]
    args += ["--log-every", "1", "--save-every", "1000", "--metavoter-min-steps", "20"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hae_model.train", *args, "--max-steps", str(STEPS)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        # The model is built and stage 1 is about to start: a signal now stops it mid-run.
        for line in proc.stderr:
            lines.append(line)
            if "training rows in" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=240)
    finally:
        proc.kill()
    log = "".join(lines) + rest
    assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert "Traceback" not in log and "training stopped by SIGTERM" in log
    logged = [int(m) for m in re.findall(rf"step (\d+)/{STEPS} loss", log)]
    saved = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in saved] == [f"step-{logged[-1]:07d}"]  # the step it was in
    assert logged[-1] < STEPS and not (out / "config.json").exists()  # stage 1 did not finish
    train(_cfg(small_export, tiny_dir, out, max_steps=STEPS, save_every=1000, resume=True))
    _assert_same_weights(straight, out)


def test_cli_rejects_bad_arguments(tiny_dir, small_export, tmp_path, capsys):
    cases = [
        (["--data", str(tmp_path / "nowhere")], "no rows for split"),
        (["--data", str(small_export), "--batch-size", "0"], "batch_size must be >= 1"),
        (["--data", str(small_export), "--precision", "fp8"], "invalid choice"),
        (["--data", str(small_export), "--warmup-ratio", "1.5"], "warmup_ratio"),
        (["--data", str(small_export), "--dtype", "float8"], "invalid choice"),
        (["--data", str(small_export), "--max-tiles", "0"], "max_tiles must be >= 1"),
        (["--data", str(small_export), "--lora-alpha", "0"], "lora_alpha must be > 0"),
        # Stage-2 settings that cannot work fail before stage 1, not after it.
        (["--data", str(small_export), "--metavoter-batch", "1"], "metavoter_batch must be >= 2"),
        (
            ["--data", str(small_export), "--metavoter-epochs", "0", "--metavoter-min-steps", "0"],
            "cannot both be 0",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            train_main(["--base", str(tiny_dir), "--output", str(tmp_path / "o"), *extra])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(
            [
                "--data",
                str(small_export),
                "--base",
                str(tmp_path / "no-model"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
    assert "no such folder" in capsys.readouterr().err


def test_ddp_two_cpu_processes_on_gloo(tiny_dir, small_export, tmp_path):
    out = tmp_path / "ddp"
    proc = _run(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "hae_model.train",
            "--data",
            str(small_export),
            "--base",
            str(tiny_dir),
            "--output",
            str(out),
            "--max-tiles",
            "1",
            "--max-steps",
            "3",
            "--batch-size",
            "2",
            "--grad-accum",
            "2",
            "--num-workers",
            "1",
            "--log-every",
            "1",
            "--metavoter-min-steps",
            "20",
        ]
    )
    log = proc.stderr
    assert "rank 0/2 on cpu (gloo)" in log
    assert "of 8 samples (2 x 2 accumulation x 2 ranks)" in log
    assert "DDP replicas in sync" in log
    # Stage 2 gathered every held-out training image from both ranks exactly once.
    scores = pq.read_table(out / "metavoter_train_scores.parquet").to_pylist()
    ids = [r["image_id"] for r in scores]
    rows = ShardStream(list_row_groups(small_export, "train"), lambda r: r)
    held = [r["image_id"] for r in rows if in_holdout(r["image_id"], 0.1)]
    assert held and sorted(ids) == sorted(held)
    for name in (
        "config.json",
        "heads.safetensors",
        "metavoter.safetensors",
        "adapter/adapter_model.safetensors",
    ):
        assert (out / name).is_file(), name


def test_cli_end_to_end(tmp_path, small_export, caplog, capsys):
    tiny = tmp_path / "tiny"
    model = tmp_path / "model"
    # tiny, train, evaluate and score through their CLI entry points, in this process (`python
    # -m` runs the same `main`; train runs as a subprocess in the DDP and SIGTERM tests).
    assert tiny_main(["--output", str(tiny)]) == 0
    args = ["--data", str(small_export), "--base", str(tiny), "--output", str(model)]
    args += ["--max-tiles", "1", "--max-steps", "3", "--batch-size", "4", "--grad-accum", "1"]
    args += ["--num-workers", "1", "--log-every", "1", "--metavoter-min-steps", "20"]
    with caplog.at_level(logging.INFO):
        assert train_main(args) == 0
    assert "samples/s" in caplog.text and "model saved to" in caplog.text
    report_path = tmp_path / "eval" / "quick.json"
    eval_args = ["--model", str(model), "--data", str(small_export), "--split", "quick"]
    eval_args += ["--output", str(report_path), "--num-workers", "1"]
    assert evaluate_main(eval_args) == 0
    report = json.loads(report_path.read_text())
    assert report["split"] == "quick" and report["images"] > 0
    total = report["total"]
    assert set(total["heads"]) == {"lm", "regression", "expert", "metavoter"}
    assert set(total["heads"]["metavoter"]) >= {
        "plcc",
        "srcc",
        "krcc",
        "mse",
        "mae",
        "rmse",
        "accuracy",
        "precision",
        "recall",
        "f1",
    }
    assert total["text"]["answers"] == total["n"]
    assert 0 <= total["text"]["unparseable"] <= total["n"]
    assert set(report["per_source"]) <= {"ava", "baid", "humanbeauty_50k"}
    md = report_path.with_suffix(".md").read_text()
    assert "| total | MetaVoter |" in md and "PLCC" in md
    assert report["overall_from"] in ("metavoter", "lm", "regression", "expert")
    assert "The model's overall score is the" in md

    images = sorted((small_export.parent / "images").glob("*.png"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    capsys.readouterr()
    code = score_main(["--model", str(model), "--json", str(images[0]), str(bad), str(images[1])])
    out = capsys.readouterr()
    assert code == 1, out.err[-3000:]  # one image failed, the others scored
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [r["image"] for r in lines] == [str(images[0]), str(bad), str(images[1])]
    assert "error" in lines[1]
    ok = lines[0]
    assert 0 <= ok["overall"] <= 1 and len(ok["dimensions"]) == 12
    assert ok["overall_from"] == report["overall_from"]
    assert ok["overall"] == ok["heads"][ok["overall_from"]]
    assert "Overall Aesthetic" in ok["dimensions"] and ok["levels"]["overall"] in (
        "bad",
        "poor",
        "fair",
        "good",
        "excellent",
    )
    assert isinstance(ok["answer"], str) and isinstance(ok["fine_grained_answer"], str)


def test_learning_brightness(tiny_dir, tmp_path):
    """The overall score is the image's mean intensity: a short CPU run must learn it."""
    data = make_export(
        tmp_path / "bright", n_overall=320, n_fine=64, size=(56, 56), seed=1, test_fraction=0.25
    )
    out = tmp_path / "model"
    train(
        _cfg(
            data,
            tiny_dir,
            out,
            epochs=3,
            batch_size=8,
            grad_accum=1,
            lr=1e-3,
            log_every=20,
            save_every=10_000,
            metavoter_min_steps=1000,
        )
    )
    report = evaluate(out, data, split="test", text=False, num_workers=0, batch_size=16)
    heads = report["total"]["heads"]
    assert report["total"]["n"] >= 60
    assert heads["regression"]["plcc"] >= 0.9, heads
    # On held-out images, the model's overall score (the MetaVoter, or the head stage 2 chose
    # over it) is no worse than its best head, and the choice is written down.
    summary = json.loads((out / "training_summary.json").read_text())
    assert report["overall_from"] == summary["overall_from"]
    best = min(heads[h]["mae"] for h in ("lm", "regression", "expert"))
    assert heads[report["overall_from"]]["mae"] <= best * 1.1, (report["overall_from"], heads)
    assert heads[report["overall_from"]]["plcc"] >= 0.9, heads


@pytest.mark.slow
def test_compiled_backbone_with_gradient_checkpointing(tiny_dir, small_export, tmp_path):
    """torch.compile of the trunk (a few minutes of compilation on the CPU)."""
    out = tmp_path / "compiled"
    train(
        _cfg(
            small_export,
            tiny_dir,
            out,
            max_steps=4,
            compile=True,
            gradient_checkpointing=True,
            save_every=10,
        )
    )
    report = evaluate(out, small_export, split="test", text=False, num_workers=0)
    assert report["total"]["n"] > 0


def test_bf16_backbone_trains_fp32_lora_and_heads(tiny_dir, small_export, tmp_path, caplog):
    out = tmp_path / "bf16"
    with caplog.at_level(logging.INFO, logger="hae_model.train"):
        train(_cfg(small_export, tiny_dir, out, max_steps=2, dtype="bfloat16", save_every=10))
    assert "backbone bfloat16" in caplog.text
    losses = [float(x) for x in re.findall(r"step \d/2 loss (\S+)", caplog.text)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    weights = load_file(str(out / "checkpoints" / "step-0000002" / "trainable.safetensors"))
    assert any("lora_B" in n and w.abs().sum() > 0 for n, w in weights.items())  # it moved
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    assert (out / "training_summary.json").is_file()


def test_dtype_choices_resolve_per_device():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert [resolve_dtype(n, cpu) for n in DTYPES[1:]] == [
        torch.float32,
        torch.bfloat16,
        torch.float16,
    ]
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("float8", cpu)


def test_global_batch_sets_accumulation_for_any_number_of_ranks():
    from hae_model.train import TrainConfig, resolve_grad_accum

    cfg = TrainConfig(data="d", base="b", output="o", batch_size=2, global_batch=16)
    assert resolve_grad_accum(cfg, 1) == 8
    assert resolve_grad_accum(cfg, 8) == 1
    with pytest.raises(ValueError, match="global-batch"):
        resolve_grad_accum(cfg, 3)
    assert resolve_grad_accum(TrainConfig(data="d", base="b", output="o", grad_accum=3), 2) == 3
