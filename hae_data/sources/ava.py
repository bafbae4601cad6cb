"""AVA: A Large-Scale Database for Aesthetic Visual Analysis (Murray et al., CVPR 2012).

Native format (confirmed against the authors' ``AVA_dataset/README.txt``, redistributed in
github.com/imfing/ava_downloader): ``AVA.txt``, one image per line, 15 space-separated columns:
index, image id, ten vote counts for the scores 1..10, semantic tag 1, semantic tag 2 (ids
1-66 named in ``tags.txt``; ``0`` means no tag), challenge id (named in ``challenges.txt``).
``aesthetics_image_lists/generic_ls_train.jpgl`` and ``generic_test.jpgl`` list the image ids of
the official large-scale train and test sets. The images (``<id>.jpg``, about 255,500 files) are
not part of the release. The text files are accepted at the root or under ``AVA_dataset/``
(the folder name of the authors' package, as in imfing/ava_downloader). The image folder:

- ``images/images/<id>.jpg``, the layout of the widely shared 7z archive linked from
  imfing/ava_downloader's README (unpacked, its folder ``images/`` holds a folder
  ``images/``); many public loaders hard-code ``AVA_dataset/images/images/`` (for example
  phuockhanhle/iqs-digikam, ``NIMA/train.sh``; a code search for that string fills its ten
  result slots with unrelated projects), so it is tried at the root and under
  ``AVA_dataset/``;
- ``images/`` or ``image/`` (Ry3nG/SSIRA, ``code/AestheticNet/utils/constants.py``, reads
  ``AVA_dataset/image`` beside ``AVA_dataset/AVA.txt``), at the root or under
  ``AVA_dataset/``;
- flat: the images beside ``AVA.txt``.

Failing those, the folder holding the most of ``AVA.txt``'s ids is searched for under the root;
``images_dir`` overrides. A UTF-8 BOM at the start of ``AVA.txt`` is dropped.

Score: 1-10, higher is better. Raters: a vote histogram from DPChallenge members (about 200
votes per image, no rater ids), so the MOS is the vote-weighted mean of 1..10 with the vote
count kept as ``rater_count`` and the sample standard deviation of the votes as ``score_std``.
An image with no votes is rejected (``no_votes``).

Licence: research use only; images remain the copyright of their photographers and
DPChallenge, and must not be redistributed. Citation: Murray, Marchesotti, Perronnin. AVA: A
large-scale database for aesthetic visual analysis. CVPR 2012. Homepage / how to obtain: the
annotation package from http://www.lucamarchesotti.com/ (mirrored by imfing/ava_downloader on
GitHub, which also links the image archive).

Metadata kept per image: ``ava_index``, ``votes`` (the histogram), ``vote_count``, ``tags``
(ids, without the 0 placeholders), ``tag_names`` (when ``tags.txt`` is present),
``challenge_id`` / ``challenge`` and ``official_split`` (``train``/``test``) when the lists exist.

``AVA.txt`` is streamed line by line: the 255,500-line file loads in about a second
(``tests/sources/test_ava_large.py``).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from operator import mul
from pathlib import Path
from typing import Any

from hae_data.records import Record, Rejection
from hae_data.sources.base import DirectoryIndex, Source, SourceInfo, read_text_lines, relpath
from hae_data.sources.fixtures import (
    FixtureImages,
    FixtureManifest,
    ImageProvider,
    append_bytes,
    check_layout,
    check_n,
    folder_prefix,
    seeded_rng,
    write_hostile_files,
)

__all__ = ["LAYOUTS", "AvaSource", "write_fixture"]

log = logging.getLogger(__name__)

_N_COLUMNS = 15
_N_SCORES = 10
_MAX_TAG = 66


def _read_names(path: Path | None) -> dict[int, str]:
    """``id name`` lines (``tags.txt``, ``challenges.txt``) as a dict; unreadable lines skipped."""
    names: dict[int, str] = {}
    if path is None:
        return names
    for number, line in read_text_lines(path):
        parts = line.strip().split(maxsplit=1)
        try:
            names[int(parts[0])] = parts[1].strip() if len(parts) > 1 else ""
        except ValueError:
            log.warning("%s:%d: not an 'id name' line: %r", path, number, line)
    return names


def _read_ids(path: Path | None) -> set[str]:
    if path is None:
        return set()
    return {line.strip() for _, line in read_text_lines(path)}


class AvaSource(Source):
    """AVA from ``AVA.txt`` and ``images/<id>.jpg``.

    ``images_dir`` overrides where the images are (relative to the root or absolute).
    """

    info = SourceInfo(
        name="ava",
        title="AVA",
        part="overall",
        scale=(1.0, 10.0),
        raters="vote histogram over scores 1-10, about 200 votes per image",
        licence="Research use only; images remain the copyright of their DPChallenge "
        "photographers.",
        citation="Murray, Marchesotti, Perronnin. AVA: A large-scale database for aesthetic "
        "visual analysis. CVPR 2012.",
        homepage="https://github.com/imfing/ava_downloader",
        use="training",
    )
    image_folders = (
        "images",
        "images/images",
        "image",
        "AVA_dataset/images",
        "AVA_dataset/images/images",
        "AVA_dataset/image",
        "AVA_dataset",
        ".",
    )

    def __init__(
        self, root: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(root, images_dir=images_dir)
        self.labels = self._find(["AVA.txt", "AVA_dataset/AVA.txt"], what="AVA.txt")
        assert self.labels is not None
        meta = self.labels.parent
        self.tags_file = meta / "tags.txt" if (meta / "tags.txt").is_file() else None
        self.challenges_file = (
            meta / "challenges.txt" if (meta / "challenges.txt").is_file() else None
        )
        lists = meta / "aesthetics_image_lists"
        self.train_list = (
            lists / "generic_ls_train.jpgl" if (lists / "generic_ls_train.jpgl").is_file() else None
        )
        self.test_list = (
            lists / "generic_test.jpgl" if (lists / "generic_test.jpgl").is_file() else None
        )

    def label_names(self) -> Iterator[str]:
        """``<id>.jpg`` for each line of ``AVA.txt`` (column 2 is the image id)."""
        for _, line in read_text_lines(self.labels, title=self.info.title):
            fields = line.split(maxsplit=2)
            if len(fields) > 1:
                yield f"{fields[1]}.jpg"

    def iter_items(self) -> Iterator[Record | Rejection]:
        """Stream ``AVA.txt``: one record per line with votes, rejections for bad lines."""
        tags = _read_names(self.tags_file)
        challenges = _read_names(self.challenges_file)
        train_ids, test_ids = _read_ids(self.train_list), _read_ids(self.test_list)
        index = DirectoryIndex(self.images, self.root)
        seen: dict[str, int] = {}
        where_file = self.labels.name
        prefix = relpath(self.images, self.root)
        prefix = "" if prefix == "." else prefix + "/"
        for number, line in read_text_lines(self.labels, title=self.info.title):
            fields = line.split()
            image_id = fields[1] if len(fields) > 1 else fields[0]
            name = f"{image_id}.jpg"
            file_name = f"{prefix}{name}"
            problem = _check(fields, line)
            if problem is not None:
                reason, detail = problem
                yield self._reject(
                    file_name, reason, f"{where_file}:{number}: {detail}", image=self.images / name
                )
                continue
            votes = list(map(int, fields[2 : 2 + _N_SCORES]))
            n = sum(votes)
            if image_id in seen:
                yield self._reject(
                    file_name,
                    "duplicate_id",
                    f"{where_file}:{number}: image id {image_id} already listed on line "
                    f"{seen[image_id]}",
                    image=self.images / name,
                )
                continue
            seen[image_id] = number
            found, rejection = self._locate(index, name, file_name, f"{where_file}:{number}")
            if rejection is not None:
                yield rejection
                continue
            s1 = sum(map(mul, _K, votes))
            s2 = sum(map(mul, _K2, votes))
            mos = s1 / n
            # Sample variance of the votes from the histogram's first two moments.
            std = math.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1)) if n > 1 else None
            tag_ids = (int(fields[12]), int(fields[13]))
            challenge_id = int(fields[14])
            kept_tags = [t for t in tag_ids if t != 0]
            metadata: dict[str, object] = {
                "ava_index": fields[0],
                "votes": votes,
                "vote_count": n,
                "tags": kept_tags,
                "challenge_id": challenge_id,
            }
            if tags:
                metadata["tag_names"] = [tags.get(t, str(t)) for t in kept_tags]
            if challenges:
                metadata["challenge"] = challenges.get(challenge_id)
            if image_id in test_ids:
                metadata["official_split"] = "test"
            elif image_id in train_ids:
                metadata["official_split"] = "train"
            yield self._record(
                found,
                mos,
                file_name=file_name,
                rater_count=n,
                score_std=std,
                metadata=metadata,
            )


_K = tuple(range(1, _N_SCORES + 1))
_K2 = tuple(k * k for k in _K)


def _check(fields: list[str], line: str) -> tuple[str, str] | None:
    """``(reason, detail)`` for a line that cannot be used, None for a good one."""
    if len(fields) != _N_COLUMNS:
        return "malformed_row", f"{len(fields)} columns, expected {_N_COLUMNS}: {line[:120]!r}"
    counts = fields[2 : 2 + _N_SCORES]
    if not all(c.lstrip("-").isdecimal() for c in counts):
        return "non_numeric_score", f"vote counts must be integers: {counts}"
    if any(c.startswith("-") for c in counts):
        return "score_out_of_range", f"negative vote count in {counts}"
    ids = fields[12:]
    if not all(i.isdecimal() for i in ids):
        return "malformed_row", f"tag and challenge ids must be non-negative integers: {ids}"
    if any(int(t) > _MAX_TAG for t in ids[:2]):
        return "malformed_row", f"tag ids must be 0 (none) or 1-{_MAX_TAG}: {ids[:2]}"
    if all(c.lstrip("0") == "" for c in counts):
        return "no_votes", "all ten vote counts are 0"
    return None


# -- fixture: a miniature copy in the native layout (see hae_data.sources.fixtures) ----

#: AVA layouts: (folder of ``AVA.txt`` and its lists, image folder), relative to the root.
_AVA_LAYOUTS = {
    "images": (".", "images"),
    "archive": ("AVA_dataset", "AVA_dataset/images/images"),
    "images/images": (".", "images/images"),
    "image": ("AVA_dataset", "image"),
    "flat": (".", "."),
}

#: The layouts :func:`write_fixture` can produce (``layout=``), the default first.
LAYOUTS = tuple(_AVA_LAYOUTS)


def write_fixture(
    root: Path,
    *,
    n: int = 6,
    images: ImageProvider = None,
    broken: bool = True,
    layout: str = "images",
    hostile: bool = False,
) -> FixtureManifest:
    """``AVA.txt`` (15 columns), ``tags.txt``, ``challenges.txt``, the generic split lists and
    ``<id>.jpg`` images in the ``layout``'s folder. Item 0 has no tags (``0 0``), item 1 one
    tag (``15 0``)."""
    check_n(n)
    meta_dir, image_dir = (root / d for d in _AVA_LAYOUTS[check_layout("ava", layout, LAYOUTS)])
    prefix = folder_prefix(image_dir, root)
    rng = seeded_rng("ava")
    files = FixtureImages(images, n)
    meta_dir.mkdir(parents=True, exist_ok=True)
    (meta_dir / "tags.txt").write_text("1 Abstract\n15 Nature\n17 Portraiture\n18 Still Life\n")
    (meta_dir / "challenges.txt").write_text("100 Portraits\n101 Free_Study\n102 Faces\n")
    lines: list[str] = []
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    meta: dict[str, dict[str, Any]] = {}
    train, test = [], []
    for i in range(n):
        image_id = str(953_000 + i)
        votes = [int(v) for v in rng.integers(0, 40, size=10)]
        votes[int(rng.integers(0, 10))] += 1  # never all zero
        tags = [0, 0] if i == 0 else [15, 0] if i == 1 else [17, 1 + int(rng.integers(0, 66))]
        lines.append(" ".join(map(str, [i + 1, image_id, *votes, *tags, 100 + i % 3])))
        files.good(image_dir / f"{image_id}.jpg", i)
        name = f"{prefix}{image_id}.jpg"
        total = sum(votes)
        scores[name] = sum(k * c for k, c in enumerate(votes, start=1)) / total
        counts[name] = total
        meta[name] = {"tags": [t for t in tags if t], "challenge_id": 100 + i % 3}
        (train if i % 2 == 0 else test).append(image_id)
    rejected: Counter[str] = Counter()
    if broken:
        k = n + 1
        lines.append(f"{k} 990001 1 2 3 4 5 6 7 8 9 10 0 0")  # 14 columns
        rejected["malformed_row"] += 1
        lines.append(f"{k + 1} 990002 1 2 x 4 5 6 7 8 9 10 0 0 100")
        rejected["non_numeric_score"] += 1
        lines.append(f"{k + 2} 990003 1 2 -3 4 5 6 7 8 9 10 0 0 100")
        rejected["score_out_of_range"] += 1
        lines.append(f"{k + 3} 990004 0 0 0 0 0 0 0 0 0 0 0 0 100")
        rejected["no_votes"] += 1
        lines.append(f"{k + 4} 990005 1 2 3 4 5 6 7 8 9 10 0 0 100")  # no image file
        rejected["missing_file"] += 1
        first = lines[0].split(" ", 1)[1]
        lines.append(f"{k + 5} {first}")
        rejected["duplicate_id"] += 1
    if hostile:
        for j, (label, reason) in enumerate(write_hostile_files(root, image_dir).rows.items()):
            lines.append(f"{n + 20 + j} {label.removesuffix('.jpg')} 1 2 3 4 5 6 7 8 9 10 0 0 100")
            rejected[reason] += 1
    ava_txt = meta_dir / "AVA.txt"
    ava_txt.write_text("\n".join(lines) + "\n")
    if hostile:
        # An id whose bytes are not UTF-8: read as U+FFFD, it cannot name a file.
        append_bytes(ava_txt, b"990 \xff\xfe990 1 2 3 4 5 6 7 8 9 10 0 0 100\n")
        rejected["undecodable_name"] += 1
    lists = meta_dir / "aesthetics_image_lists"
    lists.mkdir(exist_ok=True)
    (lists / "generic_ls_train.jpgl").write_text("".join(f"{i}\n" for i in train))
    (lists / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in test))
    return FixtureManifest("ava", root, n, dict(rejected), scores, counts, metadata=meta)
