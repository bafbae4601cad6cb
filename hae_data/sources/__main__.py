"""``python -m hae_data.sources``: list the sources, or inspect a downloaded dataset.

    python -m hae_data.sources list
    python -m hae_data.sources inspect ava /data/AVA --examples 5
    python -m hae_data.sources inspect scut_fbp5500 /data/SCUT-FBP5500_v2 -o min_raters=30 --json

Exit status: 0 on success, 2 for a bad command line (unknown source, missing root, unknown
option), 1 when the dataset's files cannot be read as the source's native format.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hae_data.sources import CATALOG, SOURCES, SourceFormatError, SourceRootError
from hae_data.sources.inspection import inspect_source

log = logging.getLogger("hae_data.sources")

_PROGRESS_EVERY = 50_000
_BAR_STEP = 500


def _options(cls: type, pairs: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``KEY=VALUE`` pairs checked against the loader's keyword arguments."""
    params = {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in params:
            allowed = ", ".join(params) or "none"
            parser.error(f"bad option {pair!r} for {cls.__name__}; options: {allowed}")
        value: Any
        if "," in text:
            value = tuple(float(v) for v in text.split(","))
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        out[key] = value
    return out


def _list(as_json: bool) -> int:
    rows = []
    for name, cls in SOURCES.items():
        info = CATALOG[name]
        rows.append(
            {
                "name": name,
                "loader": cls.__name__,
                "title": info.title,
                "part": info.part,
                "scale": list(info.scale),
                "raters": info.raters,
                "licence": info.licence,
                "homepage": info.homepage,
                "layout_confirmed": info.layout_confirmed,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    for row in rows:
        lo, hi = row["scale"]
        flag = "" if row["layout_confirmed"] else "  [layout partly unconfirmed]"
        sys.stdout.write(
            f"{row['name']:<20} {row['title']}{flag}\n"
            f"{'':<20} scale {lo:g}-{hi:g}; {row['raters']}\n"
            f"{'':<20} licence: {row['licence']}\n"
            f"{'':<20} {row['homepage']}\n"
        )
    return 0


def _progress(total_hint: str) -> tuple[Any, Any]:
    """A progress callback: a tqdm bar on a terminal, a log line every 50k items otherwise."""
    from tqdm import tqdm

    bar = tqdm(desc=f"inspect {total_hint}", unit=" items", file=sys.stderr, disable=None)

    def update(count: int) -> None:
        if count % _BAR_STEP:
            return
        if not bar.disable:
            bar.update(_BAR_STEP)
        elif count % _PROGRESS_EVERY == 0:
            log.info("%s: %d items read", total_hint, count)

    return update, bar


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hae_data.sources",
        description="The source datasets of HumanBeauty: list them, or check a downloaded copy "
        "(counts, score ranges, rejected items by reason, example rows) before building.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the sources with scale, raters, licence, homepage")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of text")
    p_inspect = sub.add_parser(
        "inspect",
        help="load a dataset from its root folder and summarise it",
        description="Load NAME from ROOT (the folder exactly as its authors distribute it) and "
        "print counts, raw-score and MOS ranges, rejections by reason and example rows. "
        "Nothing is written.",
    )
    p_inspect.add_argument("name", metavar="NAME", choices=list(SOURCES), help=", ".join(SOURCES))
    p_inspect.add_argument("root", metavar="ROOT", type=Path, help="the dataset's root folder")
    p_inspect.add_argument(
        "--examples", type=int, default=3, metavar="N", help="example rows to show (default 3)"
    )
    p_inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    p_inspect.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, e.g. min_raters=30 or images_dir=pics (repeatable)",
    )
    p_inspect.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "list":
        return _list(args.json)

    if args.examples < 0:
        p_inspect.error("--examples must be >= 0")
    root: Path = args.root
    if not root.exists():
        p_inspect.error(f"ROOT {str(root)!r} does not exist")
    if not root.is_dir():
        p_inspect.error(f"ROOT {str(root)!r} is not a folder")
    cls = SOURCES[args.name]
    options = _options(cls, args.option, p_inspect)
    try:
        source = cls(root, **options)
    except SourceRootError as exc:
        p_inspect.error(str(exc))
    except (TypeError, ValueError) as exc:
        if not isinstance(exc, SourceFormatError):
            p_inspect.error(f"{cls.__name__}: {exc}")
        sys.stderr.write(f"error: {exc}\n")
        return 1
    update, bar = (None, None) if args.quiet else _progress(args.name)
    try:
        report = inspect_source(source, examples=args.examples, progress=update)
    except SourceFormatError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    finally:
        if bar is not None:
            bar.close()
    sys.stdout.write(
        json.dumps(report.to_dict(), indent=2, default=str) + "\n"
        if args.json
        else report.to_text() + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
