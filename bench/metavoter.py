"""Where the MetaVoter's fitting data should come from, measured (issue 11; SPEC 3.2).

Trains the tiny random InternVL twice per setup, once with the paper's stage 2 (``--metavoter-
data train``: the voter fitted on in-sample head scores of the whole training split) and once
with ``holdout`` (a hash-chosen 10% of the training split kept out of stage 1), then scores the
test split. Two setups, on the generated brightness data of the learning test:

- ``well-fit``: 320 overall + 64 fine-grained images, 3 epochs (the learning test's run);
- ``small``: 48 + 16 images, 40 epochs;
- ``overfit``: 48 + 16 images, half of them for testing, 150 epochs: the heads memorise the
  training split (the held-out slice is then 20%, to hold a few images at all).

For each run it reports the test MAE of every head, of the MetaVoter and of the model's
``overall`` (the MetaVoter unless stage 2 chose a head), and refits the MetaVoter offline on the
same cached scores with other ``min_steps`` to re-examine that floor.

    OMP_NUM_THREADS=1 python bench/metavoter.py            # about 10 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hae_model.config import VOTER_INPUTS
from hae_model.evaluate import evaluate
from hae_model.heads import MetaVoter
from hae_model.metavoter import train_metavoter
from hae_model.tiny import build_tiny
from hae_model.train import METAVOTER_SCORES, TrainConfig, train
from tests.model.fixtures import make_export

SETUPS = {
    "well-fit": ({"n_overall": 320, "n_fine": 64, "seed": 1}, {"epochs": 3}),
    "small": ({"n_overall": 48, "n_fine": 16, "seed": 2}, {"epochs": 40}),
    # Half the images for testing, and a held-out slice big enough to hold a few images.
    "overfit": (
        {"n_overall": 48, "n_fine": 16, "seed": 4, "test_fraction": 0.5},
        {"epochs": 150, "metavoter_holdout": 0.2},
    ),
}
MIN_STEPS = (0, 200, 1000)


def _mae(pred: list[float], target: list[float]) -> float:
    return sum(abs(p - t) for p, t in zip(pred, target, strict=True)) / len(target)


def run(root: Path, setups: list[str], modes: list[str]) -> list[dict]:
    """One row of results per (setup, MetaVoter data)."""
    torch.set_num_threads(1)
    tiny = build_tiny(root / "tiny")
    results = []
    for name in setups:
        data_kw, train_kw = SETUPS[name]
        data = make_export(root / name, size=(56, 56), **{"test_fraction": 0.25, **data_kw})
        for mode in modes:
            out = root / f"{name}-{mode}"
            start = time.perf_counter()
            cfg = TrainConfig(
                data=str(data),
                base=str(tiny),
                output=str(out),
                max_tiles=1,
                batch_size=8,
                grad_accum=1,
                num_workers=0,
                lr=1e-3,
                log_every=50,
                save_every=100_000,
                metavoter_data=mode,
                **train_kw,
            )
            train(cfg)
            report = evaluate(out, data, split="test", text=False, num_workers=0, batch_size=16)
            summary = json.loads((out / "training_summary.json").read_text())
            heads = report["total"]["heads"]
            row = {
                "setup": name,
                "metavoter_data": mode,
                "test_images": report["total"]["n"],
                "mae": {h: round(heads[h]["mae"], 4) for h in heads},
                "overall_from": report["overall_from"],
                "check": summary["metavoter_check"],
                "seconds": round(time.perf_counter() - start, 1),
            }
            # The same voter refitted with other step floors, on the same cached scores.
            fit = pq.read_table(out / METAVOTER_SCORES).to_pylist()
            x = torch.tensor([[r[h] for h in VOTER_INPUTS] for r in fit])
            y = torch.tensor([r["score"] for r in fit])
            items = _test_items(out, data)
            tx = torch.tensor([[it[h] for h in VOTER_INPUTS] for it in items])
            ty = [it["score"] for it in items]
            row["metavoter_mae_by_min_steps"] = {}
            for steps in MIN_STEPS:
                torch.manual_seed(0)
                voter = MetaVoter()
                train_metavoter(voter, x, y, min_steps=steps, seed=0)
                with torch.no_grad():
                    pred = voter(tx).tolist()
                row["metavoter_mae_by_min_steps"][steps] = round(_mae(pred, ty), 4)
            logging.getLogger("bench").warning("%s", json.dumps(row))
            results.append(row)
    return results


def _test_items(model_dir: Path, data: Path) -> list[dict]:
    from hae_model.data import list_row_groups
    from hae_model.inference import inference_loader, score_batches
    from hae_model.model import load_for_inference

    model, encoder = load_for_inference(model_dir)
    loader = inference_loader(list_row_groups(data, "test"), encoder, batch_size=16)
    return [it for it in score_batches(model, encoder, loader, device=torch.device("cpu"))]


def main() -> None:
    """CLI: run the setups and print one JSON line per run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--modes", nargs="+", default=["train", "holdout"])
    p.add_argument("--output", default=None, help="JSON file for the results")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        results = run(Path(tmp), args.setups, args.modes)
    text = json.dumps(results, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
