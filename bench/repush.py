"""What a re-push of a slightly changed build uploads, with and without content-defined pages.

The Hub stores uploads through Xet, which cuts files into content-defined chunks (a gear
rolling hash, ~64 KiB on average) and uploads only chunks it does not have. This benchmark
builds two exports of generated photos (sources ``ava`` and ``baid``) and cuts every shard of
both with the same kind of chunker (gear hash, 64 KiB target, 8-128 KiB bounds; our own
implementation of the published scheme, not Xet's code), then counts the bytes of the second
export whose chunks the first does not have: what a re-push would send. The second export
changes one source only: ``--changed`` of ``baid``'s images re-encoded and ``--added`` new ones.

Two writers are compared in the same run, on the same records:

- **before**: ``pq.ParquetWriter(..., compression="zstd")`` for every column, no page index, no
  content-defined chunking (the project's writer until this benchmark);
- **now**: the export's writer (image bytes plain and uncompressed, zstd elsewhere, page index,
  content-defined chunking as ``datasets`` sets it).

    python bench/repush.py --n 600
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import itertools
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import hae_data.export.parquet_shards as export_mod
from hae_data.export import export_dataset
from hae_data.images import read_image
from hae_data.qa import make_qa
from hae_data.records import Face, Record
from hae_data.scores import apply_levels, normalise_by_source
from hae_data.split import assign_splits

_GEAR = np.random.default_rng(20261129).integers(0, 2**63, 256, dtype=np.uint64)


def chunks(data: bytes, avg_bits: int = 16, lo: int = 8 << 10, hi: int = 128 << 10) -> list[bytes]:
    """Content-defined chunks of ``data``: a gear rolling hash over the last 64 bytes, a cut
    where its top ``avg_bits`` bits are zero (64 KiB on average), within [lo, hi] bytes."""
    arr = np.frombuffer(data, dtype=np.uint8)
    gear = _GEAR[arr]
    h = np.zeros(len(arr), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(64):  # h_i = sum_k gear[b_{i-k}] << k (mod 2^64)
            h[k:] += gear[: len(arr) - k] << np.uint64(k)
    candidates = np.flatnonzero((h >> np.uint64(64 - avg_bits)) == 0) + 1
    cuts, start = [], 0
    for c in candidates:
        while c - start > hi:
            start += hi
            cuts.append(start)
        if c - start >= lo:
            cuts.append(int(c))
            start = int(c)
    while len(arr) - start > hi:
        start += hi
        cuts.append(start)
    bounds = [0, *cuts, len(arr)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _photos(n: int, seed: int) -> list[bytes]:
    from skimage import data as skdata

    bases = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = bases[int(rng.integers(len(bases)))]
        h, w = base.shape[:2]
        y, x = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
        crop = base[y : y + 3 * h // 4, x : x + 3 * w // 4].astype(np.float32)
        crop = np.clip(crop * rng.uniform(0.7, 1.3, 3) + rng.normal(0, 4, crop.shape), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(crop.astype(np.uint8)).save(buf, format="JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def _records(folder: Path, files: dict[str, tuple[str, bytes]]) -> list[Record]:
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for name, (source, data) in sorted(files.items()):
        path = folder / name
        path.write_bytes(data)
        dec = read_image(path)
        rec = Record(source=source, file_name=name, image_path=str(path), raw_score=0.0)
        rec.raw_score = 1.0 + 9.0 * int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32
        rec.image_id, rec.width, rec.height = dec.image_id, dec.width, dec.height
        rec.faces = [Face(box=[10.0, 10.0, 90.0, 110.0], score=0.99, landmarks=[50.0] * 10)]
        recs.append(rec)
    recs, _ = normalise_by_source(recs)
    for rec in recs:
        make_qa(apply_levels(rec))
    return assign_splits(recs)


def _export(recs: list[Record], out: Path, options: dict) -> list[Path]:
    export_mod._WRITER_OPTIONS = options
    export_dataset(recs, [], out, shard_max_bytes=8 << 20, row_group_max_bytes=4 << 20)
    return sorted((out / "data").rglob("*.parquet"))


def _upload(old: list[Path], new: list[Path]) -> tuple[int, int]:
    have = {hashlib.sha256(c).digest() for p in old for c in chunks(p.read_bytes())}
    total = sent = 0
    for p in new:
        for c in chunks(p.read_bytes()):
            total += len(c)
            digest = hashlib.sha256(c).digest()
            if digest not in have:
                sent += len(c)
                have.add(digest)
    return total, sent


def main() -> None:
    """Build both exports with both writers and print what a re-push uploads."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=600, help="images, half per source (%(default)s)")
    p.add_argument("--changed", type=float, default=0.1, help="share of baid re-encoded")
    p.add_argument("--added", type=float, default=0.05, help="share of baid added")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    photos = _photos(args.n + int(args.n * args.added) + 1, seed=1)
    half = args.n // 2
    first = {f"ava-{i:05d}.jpg": ("ava", photos[i]) for i in range(half)}
    first |= {f"baid-{i:05d}.jpg": ("baid", photos[half + i]) for i in range(args.n - half)}
    second = dict(first)
    rng = np.random.default_rng(2)
    baid = sorted(n for n in first if n.startswith("baid"))
    for name in rng.choice(baid, int(len(baid) * args.changed), replace=False):
        img = Image.open(io.BytesIO(first[name][1]))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)  # re-encoded: other bytes, same photo
        second[name] = ("baid", buf.getvalue())
    for i in range(int(args.n * args.added)):
        second[f"baid-new-{i:05d}.jpg"] = ("baid", photos[args.n + i])

    before = {"compression": "zstd"}
    now = dict(export_mod._WRITER_OPTIONS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        recs_a, recs_b = _records(t / "a", first), _records(t / "b", second)
        for label, options in (("before", before), ("now", now)):
            old = _export(recs_a, t / f"{label}-a", options)
            new = _export(recs_b, t / f"{label}-b", options)
            total, sent = _upload(old, new)
            rows.append({"writer": label, "export_bytes": total, "upload_bytes": sent})
    export_mod._WRITER_OPTIONS = now
    print(
        f"{dt.date.today()} {platform.node()}: {args.n} images, baid {args.changed:.0%} "
        f"re-encoded + {args.added:.0%} added, ava unchanged"
    )
    print("| writer | second export (MB) | re-push uploads (MB) | share |")
    print("|---|---:|---:|---:|")
    for r in rows:
        share = r["upload_bytes"] / max(r["export_bytes"], 1)
        print(
            f"| {r['writer']} | {r['export_bytes'] / 2**20:.2f} | "
            f"{r['upload_bytes'] / 2**20:.2f} | {share:.0%} |"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
