"""Hub ids for the model commands (issue 14 part 4), end to end against the local Hub stand-in
of ``tests/data/hub_server.py``: ``train --data org/name --push-to-hub org/name``, ``evaluate
--data org/name``, ``score --model org/name``, ``load_scorer(org/name)``, then the same ids
from the cache with ``HF_HUB_OFFLINE=1``.

The online part runs in a child interpreter: huggingface_hub reads ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE`` once, at import, and this process imported it offline (tests/conftest.py),
which is what the offline part needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hae_model.model_hub import resolve_data
from hae_model.scorer import load_scorer
from tests.data.hub_server import LocalHub

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_ModelTokenThatMustNeverBeLogged0123456789"
DATA, MODEL = "hae-org/humanbeauty-small", "hae-org/hae-tiny"

# Online: push the export, train from its Hub id and push the model, evaluate the local model
# on the Hub data, push again (now with the evaluation), score by the model's Hub id.
_ONLINE = r"""
import sys
from hae_data.hub import push_to_hub
from hae_model import evaluate, model_hub, score, train

export, tiny, out, image = sys.argv[1:5]
push_to_hub(export, "{DATA}")
train_args = ["--data", "{DATA}", "--base", tiny, "--output", out, "--max-tiles", "1",
              "--max-steps", "2", "--batch-size", "4", "--grad-accum", "1", "--num-workers", "0",
              "--metavoter-min-steps", "5", "--push-to-hub", "{MODEL}"]
assert train.main(train_args) == 0
assert evaluate.main(["--model", out, "--data", "{DATA}", "--split", "test", "--no-text",
                      "--num-workers", "0", "--output", out + "/../eval.json"]) == 0
assert model_hub.main([out, "{MODEL}", "--data", "{DATA}"]) == 0
assert score.main(["--model", "{MODEL}", "--no-text", "--output", out + "/../s.jsonl",
                   image]) == 0
"""


def _child(script: str, args: list[str], env: dict[str, str]) -> None:
    code = script.replace("{DATA}", DATA).replace("{MODEL}", MODEL)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert TOKEN not in proc.stdout + proc.stderr


def test_train_evaluate_and_score_by_hub_id_then_offline_from_the_cache(
    tiny_dir, small_export, tmp_path
):
    image = str(sorted((small_export.parent / "images").glob("*.png"))[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "OFFLINE" not in k}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(REPO_ROOT),
        OMP_NUM_THREADS="1",
    )
    out = tmp_path / "run" / "model"
    with LocalHub(valid_tokens={TOKEN}) as hub:
        _child(
            _ONLINE,
            [str(small_export), str(tiny_dir), str(out), image],
            {**env, "HF_ENDPOINT": hub.url},
        )
        assert hub.unhandled == [] and hub.errors == []
        model = hub.repo(MODEL, "model")
        dataset_reads = {
            r.path.split("/resolve/", 1)[1].split("/", 1)[1]
            for r in hub.requests
            if r.route == "resolve" and r.path.startswith(f"/datasets/{DATA}/")
        }
        # This process is offline (HF_HUB_OFFLINE, tests/conftest.py): the cache alone answers.
        seen = len(hub.requests)
        cache = tmp_path / "hf_home" / "hub"
        offline = load_scorer(MODEL, device="cpu", text=False, cache_dir=cache)([image])[0]
        test_data = resolve_data(DATA, ["test"], cache_dir=cache)
        assert len(hub.requests) == seen

    # The model went up privately, without training checkpoints, with a card.
    assert model.private is True
    files = model.files()
    assert {"config.json", "heads.safetensors", "metavoter.safetensors", "README.md"} <= set(files)
    assert "adapter/adapter_model.safetensors" in files
    assert not [p for p in files if p.startswith(("checkpoints", "checkpoint-"))]
    card = files["README.md"].decode()
    assert f"base_model: {tiny_dir.resolve()}" in card or str(tiny_dir) in card
    assert f"- {DATA}" in card  # the card's datasets metadata
    assert "## Evaluation" in card and "| PLCC |" in card  # the second push carried the metrics
    assert len(model.commits) == 3  # initial, the push after training, the push with metrics

    # Train read only train shards, evaluate only test shards; never the rest of the export.
    assert "README.md" in dataset_reads
    shards = {p for p in dataset_reads if p != "README.md"}
    assert shards and all(p.startswith("data/") and p.endswith(".parquet") for p in shards)
    assert {p.split("/")[-1].split("-")[0] for p in shards} == {"train", "test"}

    online = [json.loads(x) for x in (tmp_path / "run" / "s.jsonl").read_text().splitlines()]
    assert [r["image"] for r in online] == [image]
    assert offline["overall"] == pytest.approx(online[0]["overall"])
    assert sorted(p.name for p in Path(test_data, "data").rglob("test-*.parquet"))


def test_push_to_hub_without_a_token_stops_training_before_it_starts(
    tiny_dir, small_export, tmp_path, capsys, monkeypatch
):
    import huggingface_hub

    from hae_model.train import main

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no HF_TOKEN, no login
    argv = ["--data", str(small_export), "--base", str(tiny_dir), "--output", str(tmp_path / "m")]
    for bad, message in [("no-namespace", "namespace/name"), ("org/name", "no Hugging Face token")]:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--push-to-hub", bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
