import pytest
from PIL import Image

from hae_data.export import export_dataset, summary_markdown, summary_rows
from hae_data.records import Rejection
from hae_data.report import export_with_report, plot_histograms
from tests.data.test_export import make_records


def test_summary_counts_images_not_rating_rows(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=20, n_fine=8)
    rejections = [
        Rejection(source="ava", file_name="a.jpg", reason="multi_face", stage="faces"),
        Rejection(source="ava", file_name="b.jpg", reason="no_face", stage="faces"),
        Rejection(
            source="humanbeauty_50k",
            file_name="c.jpg",
            reason="duplicate_rating",
            stage="ratings",
            detail="rater r1 rated this image twice",
        ),
        Rejection(
            source="humanbeauty_50k", file_name="c.jpg", reason="too_few_raters", stage="mos"
        ),
    ]
    stats = export_dataset(recs, rejections, tmp_path / "out").stats
    rows = {r["source"]: r for r in summary_rows(stats)}
    ava_kept = sum(r.source == "ava" for r in recs)
    assert rows["ava"]["raw"] == ava_kept + 2
    assert rows["ava"]["rejected_by_reason"] == {"multi_face": 1, "no_face": 1}
    assert rows["humanbeauty_50k"]["rejected"] == 1
    assert stats["sources"]["humanbeauty_50k"]["rejected_rating_rows"] == 1
    table = summary_markdown(stats)
    assert "multi_face: 1, no_face: 1" in table
    assert table.split("\n\n")[0].count("\n") == len(rows) + 2  # then the agreement table
    assert "single rating rows dropped | 1" in (tmp_path / "out" / "README.md").read_text()


def test_histograms_are_real_pngs(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=20, n_fine=8)
    paths = plot_histograms(recs, tmp_path / "plots")
    assert [p.name for p in paths] == ["scores.png", "levels.png", "dimensions.png"]
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.width > 300
    assert plot_histograms([], tmp_path / "empty")[0].exists()
    overall_only = [r for r in recs if r.part == "overall"]
    assert [p.name for p in plot_histograms(overall_only, tmp_path / "o")] == [
        "scores.png",
        "levels.png",
    ]


def test_export_with_report_puts_plots_and_table_in_the_export(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=10, n_fine=6)
    summary = export_with_report(recs, [], tmp_path / "out", shard_max_bytes=10**7)
    out = tmp_path / "out"
    assert (out / "plots" / "scores.png").is_file() and (out / "plots" / "levels.png").is_file()
    assert (out / "stats.md").read_text() == summary_markdown(summary.stats)


def _report_fixture(tmp_path):
    """An export with kept images and rejected ones (two with detections drawn, one gone)."""
    from hae_data.records import Face

    recs, _ = make_records(tmp_path / "img", n_overall=10, n_fine=4, size=(96, 64))
    face = Face(box=[10.0, 8.0, 40.0, 50.0], score=0.97, landmarks=[0.0] * 10)
    weak = Face(box=[50.0, 8.0, 80.0, 50.0], score=0.6, landmarks=[0.0] * 10)
    group = tmp_path / "img" / "group.jpg"
    Image.new("RGB", (96, 64), "white").save(group)
    rejections = [
        Rejection(
            source="ava",
            file_name="group.jpg",
            reason="multi_face",
            stage="faces",
            image_path=str(group),
            faces=[face, face, weak],
        ),
        Rejection(
            source="ava",
            file_name="gone.jpg",
            reason="missing_file",
            stage="load",
            image_path=str(tmp_path / "gone.jpg"),
        ),
        Rejection(source="humanbeauty_50k", file_name="x.jpg", reason="bad", stage="ratings"),
    ]
    export_with_report(recs, rejections, tmp_path / "out")
    return recs, tmp_path / "out" / "report.html"


def test_report_html_is_self_contained_with_galleries(tmp_path):
    import re

    recs, page = _report_fixture(tmp_path)
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    # Nothing fetched: every image inlined, no external link or script.
    assert not re.search(r"(src|href)=['\"](?!data:|#)", text)
    assert "<script" not in text
    assert text.count("data:image/png;base64,") == 3  # scores, levels, dimensions
    kept_ava = sum(r.source == "ava" for r in recs)
    assert f"kept: {min(kept_ava, 12)} of {kept_ava}" in text
    assert "rejected, multi_face: 1 of 1" in text
    assert "rejected, missing_file: 1 of 1" in text and "image unreadable" in text
    assert "rejected, bad" not in text  # a rater's row is not an image
    # Thumbnails are JPEGs with the boxes drawn (the group photo was plain white).
    import base64
    import io

    thumbs = re.findall(r"alt='group.jpg' src='data:image/jpeg;base64,([^']+)'", text)
    with Image.open(io.BytesIO(base64.b64decode(thumbs[0]))) as img:
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 16)}
    assert any(g > 150 and r < 120 for r, g, b in colours)  # a green box: a face that counts
    assert any(r > 200 and 100 < g < 200 and b < 90 for r, g, b in colours)  # amber: below 0.9


def test_report_html_renders_in_a_real_browser(tmp_path):
    """Headless Chromium opens the page and paints it (skipped where none is installed)."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    _, page = _report_fixture(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(1 << 20) or []
    assert len(colours) > 50  # a painted page (table, plots, photos), not a blank one
