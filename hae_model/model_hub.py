"""Hub ids for models and data: ``--model org/name``, ``--data org/name``, ``--push-to-hub``.

A local folder always wins: a reference is a Hub id only when no such path exists and it looks
like ``namespace/name``. Downloads go through ``huggingface_hub.snapshot_download`` into its
cache (``HF_HOME``), so a second run reads the cache, and with ``HF_HUB_OFFLINE=1`` a cached
model or split loads without any request. Only the files a command needs are fetched: for data,
the dataset card and the Parquet shards of the split(s) asked for; for a model, the whole
checkpoint folder (adapter, heads, tokenizer: a few MB; the backbone it names is fetched by
transformers as usual).

A trained model folder is pushed as a model repository with a model card (base model, data,
the metrics of the last evaluation when one was saved beside it) through
:func:`hae_data.hub.upload_folder`: one attempt per call, the token never logged, a failure a
:class:`hae_data.hub.HubPushError` that says whether calling again may help.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hae_data.records import PARTS

__all__ = [
    "EVALUATION_FILE",
    "add_push_args",
    "is_hub_id",
    "main",
    "model_card",
    "prepare_train_args",
    "push_model",
    "push_trained",
    "resolve_data",
    "resolve_model",
]

log = logging.getLogger(__name__)

#: The report of the model's last evaluation: ``hae_model.evaluate`` leaves a copy in a local
#: model folder, and the model card of a push shows its metrics.
EVALUATION_FILE = "evaluation.json"

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def is_hub_id(ref: str | os.PathLike[str]) -> bool:
    """Whether ``ref`` names a Hub repository: no such local path, and ``namespace/name``."""
    text = str(ref)
    if Path(text).expanduser().exists() or text.startswith((".", "/", "~")):
        return False
    return bool(_REPO_ID.fullmatch(text)) and ".." not in text


def _download(
    repo_id: str,
    repo_type: str,
    allow_patterns: Sequence[str] | None,
    revision: str | None,
    token: str | None,
    cache_dir: str | os.PathLike[str] | None,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=None if allow_patterns is None else list(allow_patterns),
            token=token,
            cache_dir=cache_dir,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, ValueError) as exc:
        # Raised outside the except block: the library's error can hold a server's response.
        failure = FileNotFoundError(
            f"{repo_id}: no such local folder, and no {repo_type} of that id on the Hub (or "
            "visible with this token) nor in the local cache for offline use "
            f"({type(exc).__name__}: {str(exc)[:300]})"
        )
    else:
        failure = None
    if failure is not None:
        raise failure
    log.info("%s %s: %s", repo_type, repo_id, path)
    return Path(path)


def resolve_model(
    ref: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local folder of a trained model: ``ref`` itself, or its Hub snapshot (downloaded
    once, then read from the cache: ``cache_dir``, default huggingface_hub's). Raises
    ``FileNotFoundError`` when neither holds a ``config.json``."""
    if not is_hub_id(ref):
        folder = Path(ref).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{ref}: no config.json; not a trained HumanAesExpert folder (nor a Hub id)"
            )
        return folder
    folder = _download(str(ref), "model", None, revision, token, cache_dir)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"Hub model {ref} has no config.json; not a HumanAesExpert")
    return folder


def _shard_patterns(splits: Sequence[str], parts: Sequence[str]) -> list[str]:
    # ``quick`` rows live in the test shards; ``all`` is every split (hae_model.evaluate).
    files = {"quick": ("test",), "all": ("train", "test")}
    names = dict.fromkeys(f for s in splits for f in files.get(s, (s,)))
    return [f"data/{part}/{name}-*.parquet" for part in parts for name in names]


def resolve_data(
    ref: str | os.PathLike[str],
    splits: Sequence[str],
    parts: Sequence[str] = PARTS,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local folder of an export: ``ref`` itself, or a snapshot of the Hub dataset ``ref``
    holding only its card and the shards of ``splits`` (``train``, ``test``, ``quick``,
    ``all``) for ``parts`` (in ``cache_dir``, default huggingface_hub's cache)."""
    if not is_hub_id(ref):
        return Path(ref).expanduser()
    patterns = ["README.md", *_shard_patterns(splits, parts)]
    return _download(str(ref), "dataset", patterns, revision, token, cache_dir)


def _evaluation_summary(report: dict[str, Any]) -> list[str]:
    total = report.get("total") or {}
    head = report.get("overall_from", "metavoter")
    metrics = (total.get("heads") or {}).get(head)
    if not metrics:
        return []
    keys = ("plcc", "srcc", "krcc", "mae", "rmse", "accuracy", "f1")
    cells = " | ".join("-" if metrics.get(k) is None else f"{metrics[k]:.4f}" for k in keys)
    return [
        "## Evaluation",
        "",
        f"Split `{report.get('split')}` of `{report.get('data')}`, {total.get('n')} images; "
        f"overall score from the {head} (the model's answer).",
        "",
        "| PLCC | SRCC | KRCC | MAE | RMSE | level accuracy | macro F1 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {cells} |",
        "",
    ]


def model_card(folder: str | os.PathLike[str], repo_id: str, data: str | None = None) -> str:
    """A model card for the trained model at ``folder``: YAML metadata (base model, dataset,
    library), how to load it, and the metrics of ``evaluation.json`` when present."""
    import yaml

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    train_cfg_path = folder / "train_config.json"
    train_cfg = json.loads(train_cfg_path.read_text()) if train_cfg_path.is_file() else {}
    data = data or train_cfg.get("data")
    meta: dict[str, Any] = {
        "library_name": "peft",
        "pipeline_tag": "image-text-to-text",
        "tags": ["image-quality-assessment", "aesthetics", "humanaesexpert"],
        "base_model": config.get("base_model"),
    }
    if data and is_hub_id(data):
        meta["datasets"] = [data]
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        "A HumanAesExpert (arXiv 2503.23907): a LoRA adapter on "
        f"`{config.get('base_model')}` with a regression head, an Expert head over the 12 "
        "HumanBeauty dimensions and a MetaVoter.",
        "",
        f"Trained on `{data or 'unknown'}`; overall score from the "
        f"`{config.get('overall_from', 'metavoter')}`.",
        "",
        "```python",
        "from hae_model import load_scorer",
        "",
        f'scorer = load_scorer("{repo_id}")',
        'print(scorer(["photo.jpg"])[0]["overall"])',
        "```",
        "",
    ]
    report_path = folder / EVALUATION_FILE
    if report_path.is_file():
        lines += _evaluation_summary(json.loads(report_path.read_text()))
    return "\n".join(lines)


def push_model(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    endpoint: str | None = None,
    data: str | None = None,
) -> str:
    """Upload the trained model at ``folder`` (with a ``README.md`` model card written into it
    first) to the model repository ``repo_id``; return the commit URL. Training checkpoints
    (``checkpoint-*``) stay local."""
    from hae_data.hub import check_push_target, upload_folder

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: no config.json; not a trained HumanAesExpert folder")
    token = check_push_target(repo_id, token)
    (folder / "README.md").write_text(model_card(folder, repo_id, data), encoding="utf-8")
    return upload_folder(
        folder,
        repo_id,
        repo_type="model",
        commit_message="Upload HumanAesExpert",
        private=private,
        token=token,
        endpoint=endpoint,
        allow_patterns=[
            "*.json",
            "*.safetensors",
            "*.model",
            "*.txt",
            "*.jinja",
            "README.md",
            "adapter/*",
        ],
        ignore_patterns=["checkpoints/*"],
    )


def add_push_args(parser: argparse.ArgumentParser) -> None:
    """``--push-to-hub ORG/NAME`` and ``--hub-public`` (for ``hae_model.train``)."""
    g = parser.add_argument_group("Hub")
    g.add_argument(
        "--push-to-hub",
        metavar="ORG/NAME",
        default=None,
        help="after training, upload the model folder (with a model card) to this Hub model "
        "repository; the token is HF_TOKEN or the cached `hf auth login`",
    )
    g.add_argument(
        "--hub-public", action="store_true", help="create the repository public (default private)"
    )


def prepare_train_args(args: argparse.Namespace) -> None:
    """Before training: check ``--push-to-hub`` (id and token) and replace a Hub ``--data`` by
    its local snapshot (train shards only), keeping the id in ``args.data_ref``. Raises
    ``ValueError`` / ``FileNotFoundError`` with what is wrong."""
    from hae_data.hub import HubPushError, check_push_target

    args.data_ref = args.data
    if getattr(args, "push_to_hub", None):
        try:
            check_push_target(args.push_to_hub)
        except HubPushError as exc:
            raise ValueError(f"--push-to-hub: {exc}") from None
    args.data = str(resolve_data(args.data, ["train"], args.parts))


def push_trained(output: str | os.PathLike[str], args: argparse.Namespace) -> int:
    """After training: push ``output`` when ``--push-to-hub`` was given; the exit status (a
    failed push says how to retry it, the trained model stays where it is)."""
    from hae_data.hub import HubPushError

    if not getattr(args, "push_to_hub", None):
        return 0
    try:
        url = push_model(
            output,
            args.push_to_hub,
            private=not args.hub_public,
            data=getattr(args, "data_ref", None),
        )
    except HubPushError as exc:
        log.error(
            "push to %s failed: %s\nThe model is saved in %s; push it again with: "
            "python -m hae_model.model_hub %s %s%s",
            args.push_to_hub,
            exc,
            output,
            output,
            args.push_to_hub,
            " --public" if args.hub_public else "",
        )
        return 1
    log.info("model pushed to %s", url)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m hae_model.model_hub FOLDER ORG/NAME``: push a trained model folder."""
    parser = argparse.ArgumentParser(
        prog="python -m hae_model.model_hub",
        description="Upload a model folder written by hae_model.train to a Hub model "
        "repository, with a model card (base model, data, metrics of its last evaluation).",
    )
    parser.add_argument("folder", help="folder written by hae_model.train")
    parser.add_argument("repo_id", metavar="ORG/NAME")
    parser.add_argument("--public", action="store_true", help="default: a private repository")
    parser.add_argument("--data", default=None, help="what it was trained on (for the card)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from hae_data.hub import HubPushError

    try:
        url = push_model(args.folder, args.repo_id, private=not args.public, data=args.data)
    except ValueError as exc:
        parser.error(str(exc))
    except HubPushError as exc:
        log.error("%s", exc)
        return 1
    log.info("pushed to %s", url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
