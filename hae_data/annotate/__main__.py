"""``python -m hae_data.annotate``: the 12-dimension standard into Label Studio and back.

    python -m hae_data.annotate config -o labeling_config.xml
    python -m hae_data.annotate tasks /data/HB-new/images --document-root /data \\
        -o tasks.json --project project.json --min-raters 9
    python -m hae_data.annotate import export.json /data/HB-new
    python -m hae_data.annotate reliability /data/HB-new --min-correlation 0.3

Exit status: 0 on success, 2 for a bad command line, 1 when an input cannot be read as what
it should be (not a Label Studio export, unreadable annotation files).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hae_data.annotate.labeling import labeling_config
from hae_data.annotate.ls_import import ExportFormatError, import_export
from hae_data.annotate.tasks import (
    TaskFileError,
    find_images,
    make_tasks,
    project_settings,
    read_keep_list,
    write_json,
)
from hae_data.defaults import MIN_RATERS
from hae_data.reliability import DEFAULT_BOOTSTRAP, DEFAULT_MIN_IMAGES, assess_reliability

log = logging.getLogger("hae_data.annotate")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hae_data.annotate",
        description="Annotate new images with the 12-dimension standard in Label Studio: "
        "labeling config, task file, import of the export, rater reliability.",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("config", help="write the labeling config generated from the standard")
    c.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    t = sub.add_parser(
        "tasks",
        help="a folder of images -> Label Studio task import file (+ project settings)",
        description="One task per image under IMAGES_DIR (recursively; with --keep only the "
        "images the face filter kept). Each task's data has 'image' (the URL Label Studio "
        "shows) and 'hb_image' (the path relative to IMAGES_DIR, which the import writes "
        "into the annotation rows).",
    )
    t.add_argument("images_dir", type=Path, metavar="IMAGES_DIR")
    t.add_argument("-o", "--output", type=Path, required=True, help="task file to write")
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--document-root",
        type=Path,
        help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: tasks get "
        "/data/local-files/?d=<path relative to it>",
    )
    where.add_argument("--url-prefix", help="tasks get URL-PREFIX + path relative to IMAGES_DIR")
    t.add_argument(
        "--keep",
        type=Path,
        metavar="FACES_JSONL",
        help="output of 'python -m hae_data.faces --json': only images with keep=true",
    )
    t.add_argument(
        "--min-raters", type=int, default=MIN_RATERS, help="ratings needed per image (%(default)s)"
    )
    t.add_argument(
        "--overlap",
        type=int,
        help="annotators per image (default: --min-raters; more leaves room for the screen)",
    )
    t.add_argument(
        "--project", type=Path, help="also write the POST /api/projects body (config, overlap)"
    )

    i = sub.add_parser(
        "import",
        help="Label Studio JSON / JSON-MIN export -> ROOT/annotations/label-studio-NNNN.csv",
        description="Only rows not already in ROOT/annotations/ are written; importing the "
        "same export again writes nothing. Every annotation that does not become a row is "
        "listed with its reason.",
    )
    i.add_argument("export", type=Path, metavar="EXPORT", help="the exported .json file")
    i.add_argument("root", type=Path, metavar="ROOT", help="dataset root (images/, annotations/)")
    i.add_argument("--rater-prefix", default="", help="prefix for Label Studio user ids")
    i.add_argument("--dry-run", action="store_true", help="write nothing, report only")
    i.add_argument("--json", action="store_true", help="print the report as JSON")

    r = sub.add_parser(
        "reliability",
        help="rater agreement of ROOT's annotation rows (alpha per dimension, r per rater)",
    )
    r.add_argument("root", type=Path, metavar="ROOT")
    r.add_argument("--min-correlation", type=float, help="screen raters below this r")
    r.add_argument(
        "--min-images",
        type=int,
        default=DEFAULT_MIN_IMAGES,
        help=f"shared images before a rater is judged ({DEFAULT_MIN_IMAGES})",
    )
    r.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="replicates")
    r.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    r.add_argument("--annotations", help="annotation file or folder, relative to ROOT")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _config(args: argparse.Namespace) -> int:
    text = labeling_config()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        log.info("wrote %s", args.output)
    return 0


def _tasks(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.images_dir.is_dir():
        parser.error(f"IMAGES_DIR {str(args.images_dir)!r} is not a folder")
    try:
        images = find_images(args.images_dir)
        if args.keep is not None:
            kept = read_keep_list(args.keep, args.images_dir)
            log.info(
                "%d of %d images kept by the face filter", len(kept & set(images)), len(images)
            )
            images = [i for i in images if i in kept]
        tasks = make_tasks(
            images, args.images_dir, document_root=args.document_root, url_prefix=args.url_prefix
        )
        project = project_settings(min_raters=args.min_raters, overlap=args.overlap)
    except (TaskFileError, ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    write_json(tasks, args.output)
    log.info("wrote %d task(s) to %s", len(tasks), args.output)
    if args.project is not None:
        write_json(project, args.project)
        log.info(
            "wrote %s: maximum_annotations=%d per task",
            args.project,
            project["maximum_annotations"],
        )
    return 0


def _import(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.export.is_file():
        parser.error(f"EXPORT {str(args.export)!r} is not a file")
    if not args.root.is_dir():
        parser.error(f"ROOT {str(args.root)!r} is not a folder")
    try:
        result = import_export(
            args.export, args.root, rater_prefix=args.rater_prefix, dry_run=args.dry_run
        )
    except (ExportFormatError, FileExistsError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return 0
    d = result.to_dict()
    lines = [
        f"{d['format']} export: {d['tasks']} task(s), {d['annotations']} annotation(s), "
        f"{d['unannotated_tasks']} task(s) not annotated yet",
        f"  new rows: {d['new_rows']}" + (f" -> {d['written']}" if d["written"] else ""),
        f"  already imported: {d['already_imported']}",
        f"  rejected: {d['rejected']}",
    ]
    lines += [f"    {reason}: {n}" for reason, n in d["rejected_by_reason"].items()]
    lines += [
        f"    [{r['reason']}] {r['image']}: {r['detail']}"[:220] for r in d["rejections"][:20]
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _reliability(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from hae_data.sources.annotations import AnnotationSource
    from hae_data.sources.base import SourceFormatError, SourceRootError

    if not args.root.is_dir():
        parser.error(f"ROOT {str(args.root)!r} is not a folder")
    try:
        source = AnnotationSource(args.root, annotations=args.annotations)
        _, clean, rejected = source.ratings()
        report = assess_reliability(
            clean,
            source.keys,
            bootstrap=args.bootstrap,
            confidence=args.confidence,
            min_correlation=args.min_correlation,
            min_images=args.min_images,
        )
    except SourceRootError as exc:
        parser.error(str(exc))
    except (SourceFormatError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if rejected:
        report.notes.append(f"{len(rejected)} invalid row(s) left out (see inspect)")
    sys.stdout.write(
        json.dumps(report.to_dict(), indent=2) + "\n" if args.json else report.to_text() + "\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "config":
        return _config(args)
    if args.command == "tasks":
        return _tasks(args, parser)
    if args.command == "import":
        return _import(args, parser)
    return _reliability(args, parser)


if __name__ == "__main__":
    sys.exit(main())
