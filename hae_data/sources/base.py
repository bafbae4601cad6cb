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
- ``outside_root``: the label names a file outside the dataset root (``..`` segments, an
  absolute path, or a symlink that resolves outside the root and the image folder); the file
  is never opened;
- ``symlink_loop``: the named file is a symlink that never resolves;
- ``undecodable_name``: the image name in the label file was not valid text in the file's
  encoding (it holds U+FFFD replacement characters), so it cannot name a file reliably;
- ``ambiguous_file``: a bare file name that matches several images (MEBeauty);
- ``duplicate_id``: the same image listed again; the first occurrence wins (loaders stream, so
  the first one has already been passed on) and the detail names it;
- ``unknown_source``: a ``label.jsonl`` entry whose ``source`` maps to no catalogue entry.

Per-rater sources add the reasons of :func:`hae_data.scores.aggregate_mos` (stages ``"ratings"``
and ``"mos"``): ``non_numeric_rating``, ``rating_out_of_range``, ``malformed_rating_row``,
``duplicate_rating`` and ``too_few_raters``.

A label file that lacks a required column cannot yield anything useful, so that is not a
per-row rejection: :class:`SourceFormatError` is raised, naming the file and the column, before
the first item is produced. So is a label file in an encoding that cannot be read (UTF-16 or
UTF-32 without a byte-order mark); UTF-8 (with or without a BOM) and UTF-16/32 with a BOM are
read.

Where the images are: each loader lists the image folders of the layouts it knows
(``image_folders``) and accepts ``images_dir`` (all but the release's, which has one folder per
part). When no known folder holds the label file's images, :func:`discover_image_folder`
searches under the root (bounded depth, symlinked folders not followed, so the search never
leaves the root) for the folder holding the most of them; the choice and the share of label rows
it matched are logged, and kept as ``Source.image_choice`` for ``inspect``.
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import logging
import math
import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

from hae_data.defaults import MIN_RATERS
from hae_data.records import Part, Record, Rejection
from hae_data.scores import MosResult, aggregate_mos, check_min_raters

__all__ = [
    "IMAGE_EXTENSIONS",
    "STAGE",
    "CsvLabels",
    "DirectoryIndex",
    "FolderChoice",
    "RaterSource",
    "RowError",
    "Source",
    "SourceFormatError",
    "SourceInfo",
    "SourceRootError",
    "csv_column",
    "csv_rows",
    "discover_image_folder",
    "iter_scored_csv",
    "iter_xlsx_rows",
    "log_folder_choice",
    "open_text",
    "parse_score",
    "read_text_lines",
    "relpath",
    "text_encoding",
    "xlsx_sheet_names",
    "xlsx_sheet_sizes",
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


#: What a source is for: one of HumanBeauty-58K's six public sources (``training``), the
#: 12-dimension annotations (``annotations``), the authors' public release (``release``), or an
#: evaluation-only set (``zero_shot``, SPEC 3.4).
USES = ("training", "annotations", "release", "zero_shot")


@dataclass(frozen=True)
class SourceInfo:
    """What a user needs to know about one source before using it: its catalogue entry.

    Each loader class carries its entry as ``info``; :data:`hae_data.sources.CATALOG` gathers
    them, and the dataset card prints each source's licence terms from there. Licence lines
    summarise the authors' stated terms; they are not legal advice, and the card tells users to
    read the original terms.
    """

    name: str
    title: str
    part: str
    scale: tuple[float, float]
    raters: str
    licence: str
    citation: str
    homepage: str
    #: One of :data:`USES`.
    use: str
    #: False where the native layout is not confirmed against a real copy of the data.
    layout_confirmed: bool = True

    def __post_init__(self) -> None:
        if self.use not in USES:
            raise ValueError(f"{self.name}: use must be one of {USES}, got {self.use!r}")


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (the record's ``file_name``)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class DirectoryIndex:
    """The names in one folder, listed once (``os.scandir``) so existence checks cost a set lookup.

    AVA has 255,500 images in one folder; one ``stat`` per label line would dominate the load
    time on network file systems, one listing does not. :meth:`locate` also keeps every file it
    accepts inside the dataset: ``root`` and the folder itself (which may be a symlink the user
    made to another disk) are the only places a name may resolve to.
    """

    def __init__(self, folder: Path, root: Path | None = None) -> None:
        self.folder = folder
        self.root = root
        self._files: set[str] | None = None
        self._links: set[str] = set()
        self._bases: tuple[str, ...] = ()

    @property
    def exists(self) -> bool:
        """Whether the folder itself exists."""
        return self.folder.is_dir()

    def _list(self) -> set[str]:
        if self._files is None:
            self._files, self._links = _list_folder(self.folder)
            bases = [self.folder] + ([self.root] if self.root is not None else [])
            self._bases = tuple(os.path.realpath(b) for b in bases)
        return self._files

    def __contains__(self, name: str) -> bool:
        files = self._list()
        if "/" in name or "\\" in name or name in self._links:
            try:
                return (self.folder / name).is_file()
            except OSError:
                return False
        return name in files

    def locate(self, name: str) -> tuple[str, str | None, str]:
        """``(path, None, "")`` when ``name`` is a file inside the dataset, else a rejection.

        The reason is ``undecodable_name``, ``outside_root`` (``..`` segments, an absolute
        path, or a symlink resolving outside the root and this folder: the file is never
        opened), ``symlink_loop`` or ``missing_file``, with a detail naming the path. The path
        is a string: this runs once per label row (255,500 for AVA), so it stays cheap.
        """
        files = self._list()
        path = os.path.join(self.folder, name)
        if "\ufffd" in name or "\x00" in name:
            return path, "undecodable_name", f"name {name!r} holds undecodable bytes"
        if name in files:
            return path, None, ""  # a regular file listed in the folder, not a symlink
        unix = name.replace("\\", "/")
        if unix.startswith("/") or _DRIVE.match(unix):
            return path, "outside_root", f"absolute path {name!r} in a label file"
        if ".." in unix.split("/"):
            return path, "outside_root", f"path {name!r} climbs out with '..'"
        real = os.path.realpath(path)
        if not any(real == b or real.startswith(b.rstrip(os.sep) + os.sep) for b in self._bases):
            return path, "outside_root", f"{path!r} resolves to {real!r}, outside the root"
        try:
            st = os.stat(real)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return path, "symlink_loop", f"{path!r} is a symlink loop"
            return path, "missing_file", f"image file not found at {path!r}"
        if not stat.S_ISREG(st.st_mode):
            return path, "missing_file", f"{path!r} is not a regular file"
        return path, None, ""


_DRIVE = re.compile(r"^[A-Za-z]:")


def _list_folder(folder: Path) -> tuple[set[str], set[str]]:
    """Regular files and symlinks directly in ``folder`` (nothing when it is not a folder).

    An entry that cannot be examined (a symlink loop, a vanished file) is left out rather
    than stopping the listing.
    """
    files: set[str] = set()
    links: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_symlink():
                        links.add(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files.add(entry.name)
                except OSError:
                    continue
    except OSError:
        pass
    return files, links


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


def xlsx_sheet_sizes(path: Path) -> dict[str, int]:
    """Rows per sheet of an ``.xlsx`` workbook, from each sheet's stored dimension.

    Counted by reading the sheet when the workbook does not store its dimension.
    """
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sizes: dict[str, int] = {}
        for ws in wb.worksheets:
            rows = ws.max_row or sum(1 for _ in ws.iter_rows(values_only=True))
            sizes[ws.title] = int(rows)
        return sizes
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


def text_encoding(path: Path, *, title: str = "") -> str:
    """The encoding to read a label file with: UTF-8 (BOM stripped), or UTF-16/32 by their BOM.

    Raises :class:`SourceFormatError` naming the file for UTF-16/32 without a byte-order mark
    (NUL bytes in its first 4 KiB), which cannot be told apart reliably.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"  # before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise SourceFormatError(
            f"{title or 'label file'}: {path} looks like UTF-16 or UTF-32 without a byte-order "
            "mark (NUL bytes in its first 4 KiB); save it as UTF-8 (or UTF-16 with a BOM)"
        )
    return "utf-8-sig"  # strips a UTF-8 BOM, reads plain UTF-8 unchanged


def open_text(path: Path, *, title: str = "") -> TextIO:
    """A label file opened for reading as text (see :func:`text_encoding`), newlines kept.

    Bytes that are not valid in the encoding become U+FFFD, so one bad byte never stops a
    file; names holding U+FFFD are rejected as ``undecodable_name`` where they name a file.
    """
    encoding = text_encoding(path, title=title)
    if encoding != "utf-8-sig":
        log.info("%s: reading %s as %s", title or "label file", path, encoding.upper())
    return open(path, encoding=encoding, errors="replace", newline="")


def read_text_lines(path: Path, *, title: str = "") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each non-blank line of a text file, streamed (1-based)."""
    with open_text(path, title=title) as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n")


@dataclass(frozen=True)
class FolderChoice:
    """Which folder a source's images were taken from, how, and how many label names it holds.

    ``how`` is ``"images_dir"`` (the option), ``"layout"`` (one of the loader's known image
    folders), ``"search"`` (found by searching under the root) or ``"none"`` (nothing matched:
    the first known folder is used and every item will be a ``missing_file``).
    """

    folder: Path
    how: str
    matched: int
    total: int

    @property
    def fraction(self) -> float:
        """The share of label names that have a file in the folder (1.0 when there are none)."""
        return self.matched / self.total if self.total else 1.0

    def summary(self, root: Path) -> str:
        """One line for logs and ``inspect``: the folder, how it was found, what it matched."""
        return (
            f"{relpath(self.folder, root)!r} ({_HOW[self.how]}): {self.matched} of "
            f"{self.total} label names ({self.fraction:.0%}) have a file there"
        )

    def to_dict(self, root: Path) -> dict[str, Any]:
        """Plain data for reports: the folder relative to ``root`` where it lies inside."""
        return {
            "folder": relpath(self.folder, root),
            "how": self.how,
            "matched": self.matched,
            "total": self.total,
            "fraction": round(self.fraction, 4),
            "summary": self.summary(root),
        }


#: How deep below the root the image-folder search looks, and how many folders at most.
SEARCH_DEPTH = 4
SEARCH_MAX_FOLDERS = 5_000
#: Label names tried against each folder during the search (nested names cost a stat each).
_SAMPLE_FLAT = 5_000
_SAMPLE_NESTED = 200


def _count(folder: Path, names: Sequence[str], listing: set[str] | None = None) -> int:
    """How many of ``names`` (relative to ``folder``) are files there."""
    if listing is None:
        files, links = _list_folder(folder)
        listing = files | links
    n = 0
    for name in names:
        if "/" in name:
            try:
                n += (folder / name).is_file()
            except OSError:
                continue
        else:
            n += name in listing
    return n


def _search_folders(root: Path) -> Iterator[tuple[Path, set[str]]]:
    """Each folder under ``root`` (itself included) to :data:`SEARCH_DEPTH` with its file names.

    ``os.walk`` does not follow symlinked folders, so the search cannot leave the root nor
    loop; hidden folders (``.git``, ``.cache``) are skipped.
    """
    base_depth = len(root.parts)
    walk = os.walk(root, followlinks=False, onerror=lambda _: None)
    for seen, (folder, dirs, files) in enumerate(walk):
        if seen == SEARCH_MAX_FOLDERS:
            log.warning("image-folder search stopped after %d folders under %s", seen, root)
            return
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if len(here.parts) - base_depth >= SEARCH_DEPTH:
            dirs[:] = []
        yield here, set(files)


def discover_image_folder(
    root: Path,
    names: Iterable[str],
    candidates: Sequence[str],
    *,
    option: str | os.PathLike[str] | None = None,
    title: str = "",
) -> FolderChoice:
    """The folder holding a source's images, given the label file's image ``names``.

    ``names`` are relative to the image folder (``123.jpg``, or ``female/asian/x.jpg``).
    ``option`` (the loader's ``images_dir``) wins when given. Otherwise the known
    ``candidates`` (relative to ``root``; ``"."`` is the root) are tried, and when none holds
    at least half of a sample of the names, the folders under the root are searched too; the
    folder holding the most wins (earlier candidates, then shallower folders, on ties). The
    choice is logged, as a warning naming ``images_dir`` when under half the names match.
    """
    # Names that climb out (``..``) are never looked up: the search must not leave the root.
    unique = [
        n
        for n in dict.fromkeys(n.replace("\\", "/").strip("/") for n in names if n)
        if ".." not in n.split("/")
    ]
    flat = [n for n in unique if "/" not in n]
    nested = [n for n in unique if "/" in n]
    sample = flat[:_SAMPLE_FLAT] + nested[:_SAMPLE_NESTED]
    if option is not None:
        folder = Path(option).expanduser()
        folder = folder if folder.is_absolute() else root / folder
        best, how = folder, "images_dir"
    else:
        existing = [c for c in candidates if (root / c).is_dir()]
        first = existing[0] if existing else (candidates[0] if candidates else ".")
        best, how, score = root / first, ("layout" if existing else "none"), 0
        for cand in existing:
            n = _count(root / cand, sample)
            if n > score:
                best, how, score = root / cand, "layout", n
        if sample and score < len(sample) / 2:
            for folder, listing in _search_folders(root):
                n = _count(folder, sample, listing)
                if n > score:
                    best, how, score = folder, "search", n
        if sample and score == 0:
            how = "none"
    choice = FolderChoice(best, how, _count(best, unique), len(unique))
    if unique:  # with no names there is nothing to report yet (the loader may count later)
        log_folder_choice(choice, root, title)
    return choice


def log_folder_choice(choice: FolderChoice, root: Path, title: str) -> None:
    """Log where the images were taken from: a warning naming ``images_dir`` under 50%."""
    message = f"{title}: images taken from {choice.summary(root)}"
    if choice.fraction < 0.5:
        log.warning(
            "%s; if the images are somewhere else, set the loader option images_dir (inspect: "
            "-o images_dir=PATH; build config: options: {images_dir: PATH})",
            message,
        )
    else:
        log.info("%s", message)


_HOW = {
    "images_dir": "the images_dir option",
    "layout": "a known layout",
    "search": "found by searching under the root",
    "none": "no folder matched",
}


class Source(ABC):
    """One source dataset, read from its native layout under ``root``.

    Subclasses set ``info`` (their :class:`SourceInfo`, the catalogue entry) and
    implement :meth:`iter_items`, which streams records and rejections in file order. The
    constructor only checks the root and finds files; nothing is read until iteration. The
    image folder (:attr:`images`) is chosen on first use from ``images_dir``, the subclass's
    ``image_folders`` and :meth:`label_names`; :attr:`image_choice` then says how.
    """

    info: ClassVar[SourceInfo]
    #: Image folders of the layouts this loader knows, relative to the root, in order of
    #: preference (``"."`` is the root itself); see :func:`discover_image_folder`.
    image_folders: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, root: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> None:
        path = Path(root).expanduser()
        if not path.exists():
            raise SourceRootError(f"{self.info.title}: dataset root {str(path)!r} does not exist")
        if not path.is_dir():
            raise SourceRootError(f"{self.info.title}: dataset root {str(path)!r} is not a folder")
        self.root = path.resolve()
        self.images_dir = images_dir
        #: How the image folder was found; set by the first use of :attr:`images`.
        self.image_choice: FolderChoice | None = None
        self._images: Path | None = None

    @property
    def images(self) -> Path:
        """The image folder, found on first use from the label file's names (reads them)."""
        if self._images is None:
            self.discover_images(self.label_names())
        assert self._images is not None
        return self._images

    @images.setter
    def images(self, folder: Path) -> None:
        self._images = folder

    def label_names(self) -> Iterable[str]:
        """The image names the label files list, relative to the image folder (for discovery).

        Loaders that find their images with :attr:`image_folders` override this.
        """
        return ()

    def discover_images(self, names: Iterable[str]) -> FolderChoice:
        """Choose the image folder for ``names`` (see :func:`discover_image_folder`), once."""
        if self.image_choice is None:
            self.image_choice = discover_image_folder(
                self.root,
                names,
                self.image_folders,
                option=self.images_dir,
                title=self.info.title,
            )
            self._images = self.image_choice.folder
        return self.image_choice

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

    def _locate(
        self, index: DirectoryIndex, name: str, file_name: str, where: str
    ) -> tuple[str, Rejection | None]:
        """The image file ``name`` names in ``index``'s folder, or the rejection saying why not.

        ``outside_root`` rejections carry no ``image_path``: nothing should ever open it.
        """
        path, reason, detail = index.locate(name)
        if reason is None:
            return path, None
        return path, self._reject(
            file_name,
            reason,
            f"{where}: {detail}",
            image=None if reason == "outside_root" else Path(path),
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


class RaterSource(Source):
    """A source published as one rating per (image, rater), whose MOS is computed here.

    What the per-rater loaders (SCUT-FBP5500, MEBeauty, HumanBeauty-50K, LAPIS) share: the
    ``min_raters`` option, checked once (default :data:`hae_data.defaults.MIN_RATERS`), and
    :meth:`_mos`, which averages each image's valid ratings with
    :func:`hae_data.scores.aggregate_mos` and rejects images rated by fewer than ``min_raters``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        min_raters: int = MIN_RATERS,
        images_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        self.min_raters = check_min_raters(min_raters)

    def _mos(
        self,
        ratings: Any,
        columns: Sequence[str],
        *,
        scale: tuple[float, float] | None = None,
        **names: str,
    ) -> MosResult:
        """The MOS of ``ratings`` (a frame, one row per rating) over ``columns``.

        ``scale`` defaults to the catalogue's; ``names`` are :func:`aggregate_mos`'s
        ``image_col`` / ``rater_col`` where the table names them otherwise.
        """
        return aggregate_mos(
            ratings,
            list(columns),
            source=self.info.name,
            scale=self.info.scale if scale is None else scale,
            min_raters=self.min_raters,
            **names,
        )


class RowError(ValueError):
    """Raised by a row hook to reject the row with ``reason`` (caught by the CSV loop)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def csv_rows(reader: Any) -> Iterator[tuple[int, list[str], str]]:
    """``(line, fields, "")`` per row of a ``csv.reader``, ``(line, [], error)`` for a bad one.

    A field over the csv module's size limit raises ``csv.Error`` in the middle of a file; the
    reader resumes on the next line, so that row is reported and the rest still read.
    """
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, [], f"unreadable row: {exc}"
            continue
        yield reader.line_num, fields, ""


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
            open_text(self.path, title=self.title)
            if text is None
            else io.StringIO(text.removeprefix("\ufeff"), newline="")
        )
        with fh:
            reader = csv.reader(fh)
            try:
                self.header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise SourceFormatError(f"{self.title}: {self.path} is empty") from None
            except csv.Error as exc:
                raise SourceFormatError(
                    f"{self.title}: {self.path}: unreadable header: {exc}"
                ) from None
            missing = [c for c in self.required if c not in self.header]
            if missing:
                raise SourceFormatError(
                    f"{self.title}: {self.path} lacks required column(s) {missing}; "
                    f"found {self.header}"
                )
            width = len(self.header)
            for line, fields, error in csv_rows(reader):
                if error:
                    yield line, None, [], error
                    continue
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) != width:
                    yield line, None, fields, f"{len(fields)} fields, header has {width}"
                    continue
                yield line, dict(zip(self.header, fields, strict=True)), fields, ""


def csv_column(
    files: Iterable[Path],
    column: str,
    *,
    title: str,
    text: Callable[[Path], str] | None = None,
) -> Iterator[str]:
    """The non-empty values of ``column`` in each CSV of ``files`` (for image discovery).

    Files or rows that cannot be read are skipped here: the loading pass reports them.
    """
    for path in files:
        labels = CsvLabels(path, [column], title=title)
        try:
            for _, row, _, _ in labels.rows(text(path) if text is not None else None):
                if row is not None and row[column].strip():
                    yield row[column].strip()
        except (SourceFormatError, OSError):
            continue


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
    index = DirectoryIndex(images, source.root)
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
                    f"{prefix}{name}"[:300] if name else where,
                    "malformed_row",
                    f"{where}: {problem}: {fields!r}"[:300],
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
            found, rejection = source._locate(index, name, file_name, where)
            if rejection is not None:
                yield rejection
                continue
            std: float | None = None
            if std_col is not None and row.get(std_col, "").strip():
                std, _ = parse_score(row[std_col], (0.0, math.inf))
            if split is not None:
                metadata["official_split"] = split
            assert value is not None
            yield source._record(
                found, value, file_name=file_name, score_std=std, metadata=metadata
            )
