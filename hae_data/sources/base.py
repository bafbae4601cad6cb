"""What every source loader shares: the ``Source`` base class, its errors, and small helpers.

A loader takes a dataset's root folder exactly as its authors distribute it and streams
:class:`~hae_data.records.Record` objects (one per labelled image) and
:class:`~hae_data.records.Rejection` objects (one per item it could not use, with a reason).
It never decodes an image (the decode and face stages do) and never computes an image id; it
only checks that the image file exists.

Rejection reasons used by the loaders (stage ``"source"``):

- ``malformed_row``: a label line with the wrong number of fields, or that cannot be parsed;
- ``missing_column``: a record (JSON line) without a required field;
- ``non_numeric_score`` / ``score_out_of_range``: a score that is not a number, or outside the
  source's declared scale (never clipped);
- ``no_votes``: an AVA line whose vote histogram is empty;
- ``missing_file``: the label names an image file that is not there;
- ``ambiguous_file``: a bare file name that matches several images (MEBeauty);
- ``duplicate_id``: the same image listed again; the first occurrence wins (loaders stream, so
  the first one has already been passed on) and the detail names it;
- ``unknown_source``: a ``label.jsonl`` entry whose ``source`` maps to no catalogue entry.

Per-rater sources add the reasons of :func:`hae_data.scores.aggregate_mos` (stages ``"ratings"``
and ``"mos"``): ``non_numeric_rating``, ``rating_out_of_range``, ``malformed_rating_row``,
``duplicate_rating`` and ``too_few_raters``.

A label file that lacks a required column cannot yield anything useful, so that is not a
per-row rejection: :class:`SourceFormatError` is raised, naming the file and the column, before
the first item is produced.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hae_data.records import Part, Record, Rejection
from hae_data.sources.catalog import SourceInfo

__all__ = [
    "IMAGE_EXTENSIONS",
    "STAGE",
    "CsvLabels",
    "DirectoryIndex",
    "RowError",
    "Source",
    "SourceFormatError",
    "SourceRootError",
    "iter_scored_csv",
    "iter_xlsx_rows",
    "parse_score",
    "read_text_lines",
    "relpath",
    "xlsx_sheet_names",
]

log = logging.getLogger(__name__)

#: The ``stage`` of every rejection a loader makes itself.
STAGE = "source"
#: File endings counted as images when a loader has to search a folder tree.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


class SourceRootError(FileNotFoundError):
    """The dataset root does not exist or is not a folder."""


class SourceFormatError(ValueError):
    """A label file is missing or lacks a required column, so nothing can be loaded from it."""


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (the record's ``file_name``)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class DirectoryIndex:
    """The names in one folder, listed once (``os.scandir``) so existence checks cost a set lookup.

    AVA has 255,500 images in one folder; one ``stat`` per label line would dominate the load
    time on network file systems, one listing does not.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._names: set[str] | None = None

    @property
    def exists(self) -> bool:
        """Whether the folder itself exists."""
        return self.folder.is_dir()

    def __contains__(self, name: str) -> bool:
        if self._names is None:
            self._names = set()
            if self.folder.is_dir():
                with os.scandir(self.folder) as entries:
                    self._names = {e.name for e in entries if e.is_file()}
        if "/" in name or "\\" in name:
            return (self.folder / name).is_file()
        return name in self._names


def parse_score(text: object, scale: tuple[float, float]) -> tuple[float | None, str | None]:
    """``(value, None)`` for a finite number inside ``scale``, else ``(None, reason)``.

    The reason is ``non_numeric_score`` (not a number, empty, NaN or infinite) or
    ``score_out_of_range``.
    """
    try:
        value = float(str(text).strip()) if not isinstance(text, int | float) else float(text)
    except (TypeError, ValueError):
        return None, "non_numeric_score"
    if math.isnan(value) or math.isinf(value):
        return None, "non_numeric_score"
    lo, hi = scale
    if not lo <= value <= hi:
        return None, "score_out_of_range"
    return value, None


def xlsx_sheet_names(path: Path) -> list[str]:
    """The sheet names of an ``.xlsx`` workbook."""
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        return list(wb.sheetnames)
    finally:
        wb.close()


def iter_xlsx_rows(path: Path, sheet: str | None = None) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """``(row number, cell values)`` of one sheet (the first when ``sheet`` is None), streamed.

    Uses openpyxl's read-only mode, which parses the sheet XML incrementally instead of
    building the whole workbook in memory (SCUT-FBP5500's sheet has 330,000 rows).
    """
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        yield from enumerate(ws.iter_rows(values_only=True), start=1)
    finally:
        wb.close()


def read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each non-blank line of a text file, streamed (1-based)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n")


class Source(ABC):
    """One source dataset, read from its native layout under ``root``.

    Subclasses set ``info`` (their :data:`~hae_data.sources.catalog.CATALOG` entry) and
    implement :meth:`iter_items`, which streams records and rejections in file order. The
    constructor only checks the root and finds files; nothing is read until iteration.
    """

    info: ClassVar[SourceInfo]

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser()
        if not path.exists():
            raise SourceRootError(f"{self.info.title}: dataset root {str(path)!r} does not exist")
        if not path.is_dir():
            raise SourceRootError(f"{self.info.title}: dataset root {str(path)!r} is not a folder")
        self.root = path.resolve()

    @property
    def name(self) -> str:
        """The catalogue key of this source."""
        return self.info.name

    @abstractmethod
    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream each labelled image as a ``Record`` and each unusable item as a ``Rejection``."""

    def load(self) -> tuple[list[Record], list[Rejection]]:
        """All records and rejections as two lists (convenience for small sources and tests)."""
        records: list[Record] = []
        rejections: list[Rejection] = []
        for item in self.iter_items():
            (records if isinstance(item, Record) else rejections).append(item)
        return records, rejections

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # -- helpers for subclasses ------------------------------------------------------------

    def _find(self, candidates: Sequence[str], *, what: str, required: bool = True) -> Path | None:
        """The first of ``candidates`` (relative to the root) that exists."""
        for cand in candidates:
            path = self.root / cand
            if path.exists():
                return path
        if required:
            tried = ", ".join(repr(c) for c in candidates)
            raise SourceFormatError(
                f"{self.info.title}: no {what} under {str(self.root)!r} (looked for {tried}); "
                f"is this the dataset root as distributed? See `python -m hae_data.sources list`."
            )
        return None

    def _images_dir(self, option: str | None, candidates: Sequence[str]) -> Path:
        """The image folder: ``option`` if given, else the first existing candidate.

        When none exists the first candidate is used anyway, so every item becomes a
        ``missing_file`` rejection that names the folder, rather than the load stopping.
        """
        if option is not None:
            folder = Path(option)
            return folder if folder.is_absolute() else self.root / folder
        for cand in candidates:
            if (self.root / cand).is_dir():
                return self.root / cand
        folder = self.root / candidates[0]
        log.warning(
            "%s: no image folder found (looked for %s); every item will be rejected as "
            "missing_file",
            self.info.title,
            ", ".join(candidates),
        )
        return folder

    def _record(
        self,
        image: Path | str,
        raw_score: float,
        *,
        part: Part = "overall",
        file_name: str | None = None,
        source: str | None = None,
        rater_count: int | None = None,
        score_std: float | None = None,
        dimension_scores: list[float] | None = None,
        dimension_std: list[float] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Record:
        return Record(
            source=source or self.info.name,
            file_name=file_name or relpath(Path(image), self.root),
            image_path=str(image),
            part=part,
            raw_score=float(raw_score),
            rater_count=rater_count,
            score_std=score_std,
            dimension_scores=dimension_scores,
            dimension_std=dimension_std,
            metadata=metadata or {},
        )

    def _reject(
        self,
        file_name: str,
        reason: str,
        detail: str,
        *,
        image: Path | None = None,
        source: str | None = None,
    ) -> Rejection:
        return Rejection(
            source=source or self.info.name,
            file_name=file_name,
            reason=reason,
            stage=STAGE,
            detail=detail,
            image_path=str(image) if image is not None else None,
        )

    def _missing(self, image: Path, where: str, *, source: str | None = None) -> Rejection:
        return self._reject(
            relpath(image, self.root),
            "missing_file",
            f"{where}: image file not found at {str(image)!r}",
            image=image,
            source=source,
        )

    def _fix_mos_rejections(
        self, rejections: Iterable[Rejection], to_path: dict[str, Path], fallback: str = ""
    ) -> Iterator[Rejection]:
        """MOS rejections name the image as the rating table does; give them root-relative paths.

        A rating row without an image id is named ``fallback`` (the rating file) instead.
        """
        for rej in rejections:
            image = to_path.get(rej.file_name)
            if image is not None:
                rej.file_name = relpath(image, self.root)
                rej.image_path = str(image)
            elif fallback and rej.file_name.strip() in ("", "None", "nan"):
                rej.file_name = fallback
            yield rej


class RowError(ValueError):
    """Raised by a row hook to reject the row with ``reason`` (caught by the CSV loop)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CsvLabels:
    """A CSV label file read row by row, with its header checked before the first row.

    A row with the wrong number of fields is reported, never padded or truncated.
    """

    def __init__(self, path: Path, required: Sequence[str], *, title: str) -> None:
        self.path = path
        self.required = tuple(required)
        self.title = title
        self.header: list[str] = []

    def rows(
        self, text: str | None = None
    ) -> Iterator[tuple[int, dict[str, str] | None, list[str], str]]:
        """``(line, row, fields, "")`` for good rows, ``(line, None, fields, detail)`` for bad ones.

        Raises :class:`SourceFormatError` before the first row when a required column is
        missing. ``text`` reads from a string instead of the file (for files whose encoding
        had to be guessed first).
        """
        fh: Any = (
            open(self.path, encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115
            if text is None
            else io.StringIO(text, newline="")
        )
        with fh:
            reader = csv.reader(fh)
            try:
                self.header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise SourceFormatError(f"{self.title}: {self.path} is empty") from None
            missing = [c for c in self.required if c not in self.header]
            if missing:
                raise SourceFormatError(
                    f"{self.title}: {self.path} lacks required column(s) {missing}; "
                    f"found {self.header}"
                )
            width = len(self.header)
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) != width:
                    yield line, None, fields, f"{len(fields)} fields, header has {width}"
                    continue
                yield line, dict(zip(self.header, fields, strict=True)), fields, ""


def iter_scored_csv(
    source: Source,
    files: Sequence[tuple[Path, str | None]],
    *,
    image_col: str,
    score_col: str,
    images: Path,
    row_hook: Callable[[dict[str, str]], dict[str, Any]] | None = None,
    std_col: str | None = None,
    text: Callable[[Path], str] | None = None,
) -> Iterator[Record | Rejection]:
    """Records from CSV files with one row per image: an image column and a score column.

    ``files`` pairs each CSV with its official split (``None`` when the file is not a split).
    ``row_hook`` turns a good row into extra metadata or raises :class:`RowError` to reject
    it. Scores outside ``source.info.scale`` and non-numbers are rejected; the first row of an
    image wins over later ones (``duplicate_id``).
    """
    index = DirectoryIndex(images)
    prefix = relpath(images, source.root)
    prefix = "" if prefix == "." else prefix + "/"
    seen: dict[str, str] = {}
    title = source.info.title
    for path, split in files:
        labels = CsvLabels(path, [image_col, score_col], title=title)
        label_name = relpath(path, source.root)
        rows = labels.rows(text(path) if text is not None else None)
        for line, row, fields, problem in rows:
            where = f"{label_name}:{line}"
            if row is None:
                col = labels.header.index(image_col)
                name = fields[col].strip() if len(fields) > col else ""
                yield source._reject(
                    f"{prefix}{name}" if name else where,
                    "malformed_row",
                    f"{where}: {problem}: {fields!r}"[:300],
                    image=images / name if name else None,
                )
                continue
            name = row[image_col].strip()
            image = images / name
            file_name = f"{prefix}{name}"
            if not name:
                yield source._reject(where, "malformed_row", f"{where}: empty {image_col!r}")
                continue
            value, reason = parse_score(row[score_col], source.info.scale)
            if reason is not None:
                lo, hi = source.info.scale
                yield source._reject(
                    file_name,
                    reason,
                    f"{where}: {score_col}={row[score_col]!r} (declared scale {lo:g}-{hi:g})",
                    image=image,
                )
                continue
            try:
                metadata = row_hook(row) if row_hook is not None else {}
            except RowError as exc:
                yield source._reject(file_name, exc.reason, f"{where}: {exc.detail}", image=image)
                continue
            if name in seen:
                yield source._reject(
                    file_name,
                    "duplicate_id",
                    f"{where}: {name!r} already listed at {seen[name]}",
                    image=image,
                )
                continue
            seen[name] = where
            if name not in index:
                yield source._missing(image, where)
                continue
            std: float | None = None
            if std_col is not None and row.get(std_col, "").strip():
                std, _ = parse_score(row[std_col], (0.0, math.inf))
            if split is not None:
                metadata["official_split"] = split
            assert value is not None
            yield source._record(
                image, value, file_name=file_name, score_std=std, metadata=metadata
            )
