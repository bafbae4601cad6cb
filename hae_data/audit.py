"""``report.html``: a self-contained page to check a build by eye.

The per-source table, the plots, and for each source a gallery of sampled kept images and, per
rejection reason, of rejected images, as thumbnails with every detected face box and its score
drawn on, so a reviewer can see whether the single-face filter decided well. Everything is
inlined (CSS, PNG plots, JPEG thumbnails as ``data:`` URIs): the file opens from disk, from a
Hub repository's file view or as a mail attachment, with no server and nothing fetched.

Samples are chosen by a hash of the image id (the same build gives the same page) and their
number is bounded per source and reason, so the page stays small for a 100k-image build.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from hae_data.defaults import FACE_THRESHOLD
from hae_data.export import format_range, format_reasons, summary_rows
from hae_data.hashing import unit_hash
from hae_data.images import ImageDecodeError, read_image
from hae_data.records import RATING_STAGE, Face, Record, Rejection

__all__ = ["DEFAULT_KEPT_SAMPLES", "DEFAULT_REJECTED_SAMPLES", "write_audit_report"]

log = logging.getLogger(__name__)

#: Kept images shown per source, and rejected images per (source, reason).
DEFAULT_KEPT_SAMPLES = 12
DEFAULT_REJECTED_SAMPLES = 6
_THUMB = 200  # long side of a thumbnail, pixels

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3} td.n{text-align:right}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:208px;font-size:11px;color:#444}
figure img{display:block;max-width:200px;max-height:200px;border:1px solid #ccc}
figcaption{word-break:break-all}
.plots img{max-width:100%;border:1px solid #eee;margin:4px 0}
.none{color:#888;font-style:italic}
"""


def write_audit_report(
    records: Sequence[Record],
    rejections: Iterable[Rejection],
    stats: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    plots: Sequence[str | os.PathLike[str]] = (),
    kept_samples: int = DEFAULT_KEPT_SAMPLES,
    rejected_samples: int = DEFAULT_REJECTED_SAMPLES,
) -> Path:
    """Write ``report.html`` for one build (see the module docstring); returns its path.

    ``stats`` is the export's statistics (``ExportSummary.stats``); ``plots`` are PNG files to
    inline. An image that can no longer be read is shown as a captioned placeholder.
    """
    path = Path(path)
    rejected_by: dict[str, dict[str, list[Rejection]]] = defaultdict(lambda: defaultdict(list))
    for rej in rejections:
        if rej.stage != RATING_STAGE:  # one rater's row is not an image to look at
            rejected_by[rej.source][rej.reason].append(rej)
    kept_by: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        kept_by[rec.source].append(rec)

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>HumanBeauty build report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>HumanBeauty build report</h1>",
        _table(stats),
    ]
    if plots:
        parts.append("<h2>Plots</h2><div class='plots'>")
        for plot in plots:
            data = base64.b64encode(Path(plot).read_bytes()).decode()
            parts.append(f"<img alt='{_e(Path(plot).stem)}' src='data:image/png;base64,{data}'>")
        parts.append("</div>")
    titles = {name: s.get("title", name) for name, s in stats["sources"].items()}
    for source in sorted(set(kept_by) | set(rejected_by), key=lambda s: titles.get(s, s)):
        parts.append(f"<h2 id='{_e(source)}'>{_e(titles.get(source, source))}</h2>")
        kept = _sample(kept_by[source], kept_samples)
        parts.append(f"<h3>kept: {len(kept)} of {len(kept_by[source])}</h3>")
        parts.append(_gallery(kept, lambda r: f"{r.file_name} · {r.level} ({r.score:.3f})"))
        for reason in sorted(rejected_by[source]):
            items = rejected_by[source][reason]
            shown = _sample(items, rejected_samples)
            parts.append(f"<h3>rejected, {_e(reason)}: {len(shown)} of {len(items)}</h3>")
            # to_row(): the detail with local paths made relative to the source folder.
            parts.append(_gallery(shown, lambda r: f"{r.file_name} · {r.to_row()['detail'][:160]}"))
    parts.append("</body></html>")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    log.info("wrote %s (%d KB)", path, path.stat().st_size // 1024)
    return path


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(stats: Mapping[str, Any]) -> str:
    rows = [
        "<table><tr><th>source</th><th>raw</th><th>kept</th><th>train</th><th>test</th>"
        "<th>rejected</th><th>rejected by reason</th><th>raw score range</th></tr>"
    ]
    for r in summary_rows(stats):
        rng = format_range(*(r["raw_score_range"] or (None, None)))
        rows.append(
            f"<tr><td><a href='#{_e(r['source'])}'>{_e(r['title'])}</a></td>"
            f"<td class='n'>{r['raw']}</td><td class='n'>{r['kept']}</td>"
            f"<td class='n'>{r['train']}</td><td class='n'>{r['test']}</td>"
            f"<td class='n'>{r['rejected']}</td>"
            f"<td>{_e(format_reasons(r['rejected_by_reason']) or '-')}</td><td>{_e(rng)}</td></tr>"
        )
    t = stats["totals"]
    rows.append(
        f"<tr><th>total</th><th>{t['kept'] + t['rejected']}</th><th>{t['kept']}</th>"
        f"<th>{t['train']}</th><th>{t['test']}</th><th>{t['rejected']}</th><th></th><th></th></tr>"
    )
    return "".join(rows) + "</table>"


def _sample(items: Sequence[Any], n: int) -> list[Any]:
    """Up to ``n`` items chosen by a hash of their identity: stable from build to build."""
    key = lambda item: unit_hash(item.image_id or f"{item.source}/{item.file_name}", "audit")  # noqa: E731
    return sorted(items, key=key)[:n]


def _gallery(items: Sequence[Record | Rejection], caption: Any) -> str:
    if not items:
        return "<p class='none'>none</p>"
    cells = []
    for item in items:
        thumb = _thumbnail(item.image_path, item.faces or [])
        if thumb:
            body = f"<img alt='{_e(item.file_name)}' src='{thumb}'>"
        else:
            body = "<div class='none'>image unreadable</div>" if item.image_path else ""
        cells.append(f"<figure>{body}<figcaption>{_e(caption(item))}</figcaption></figure>")
    return "<div class='gallery'>" + "".join(cells) + "</div>"


def _thumbnail(path: str | None, faces: Sequence[Face]) -> str | None:
    """A JPEG ``data:`` URI of the upright image with every face box and score drawn on."""
    if not path:
        return None
    try:
        decoded = read_image(path)
    except (ImageDecodeError, OSError):
        return None
    img: Image.Image = decoded.image
    scale = _THUMB / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    else:
        scale = 1.0
    draw = ImageDraw.Draw(img)
    for face in faces:
        x1, y1, x2, y2 = (v * scale for v in face.box)
        counts = face.score >= FACE_THRESHOLD  # a face that counts, drawn solid (SPEC 2.2)
        colour = (40, 200, 60) if counts else (240, 160, 0)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2 if counts else 1)
        draw.text((x1 + 2, max(0.0, y1 - 11)), f"{face.score:.2f}", fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
