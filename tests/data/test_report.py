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
    assert [p.name for p in paths] == ["scores.png", "levels.png"]
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.width > 300
    assert plot_histograms([], tmp_path / "empty")[0].exists()


def test_export_with_report_puts_plots_and_table_in_the_export(tmp_path):
    recs, _ = make_records(tmp_path / "img", n_overall=10, n_fine=6)
    summary = export_with_report(recs, [], tmp_path / "out", shard_max_bytes=10**7)
    out = tmp_path / "out"
    assert (out / "plots" / "scores.png").is_file() and (out / "plots" / "levels.png").is_file()
    assert (out / "stats.md").read_text() == summary_markdown(summary.stats)
