"""The export's dataset card (``README.md``: YAML metadata the Hub reads, and a readable body)
and its ``LICENSE.md``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from annotation_schema import load_standard
from hae_data.export.source_stats import format_range
from hae_data.near_duplicates import card_lines
from hae_data.records import PARTS
from hae_data.reliability import reliability_markdown
from hae_data.schema import FEATURES
from hae_data.sources import SourceInfo

__all__ = ["PAPER_URL", "SPLITS", "dataset_card", "licence_file"]

SPLITS = ("train", "test")

PAPER_URL = "https://arxiv.org/abs/2503.23907"


def _front_matter(
    shards: Mapping[str, Mapping[str, list[str]]],
    stats: Mapping[str, Any],
    infos: Mapping[str, SourceInfo],
    sizes: Mapping[str, Mapping[str, tuple[int, int, int]]],
) -> str:
    """The card's YAML metadata, through ``huggingface_hub.DatasetCardData``: configs, the
    ``dataset_info`` the Hub shows (features, splits with their sizes), licence fields, the
    source datasets and the paper (an ``arxiv:`` tag, so the Hub links its paper page)."""
    import datasets
    from huggingface_hub import DatasetCardData

    configs, info = [], []
    for part in PARTS:
        splits = shards.get(part, {})
        if not splits:
            continue
        files = [
            {"split": split, "path": f"data/{part}/{split}-*.parquet"}
            for split in SPLITS
            if splits.get(split)
        ]
        entry: dict[str, Any] = {"config_name": part, "data_files": files}
        if part == "overall":
            entry["default"] = True
        configs.append(entry)
        split_infos = {
            split: datasets.SplitInfo(
                name=split, num_bytes=sizes[part][split][1], num_examples=sizes[part][split][0]
            )
            for split in SPLITS
            if splits.get(split)
        }
        ds_info = datasets.DatasetInfo(
            features=FEATURES,
            config_name=part,
            splits=datasets.SplitDict(split_infos),
            download_size=sum(sizes[part][s][2] for s in split_infos),
            dataset_size=sum(sizes[part][s][1] for s in split_infos),
        )
        info.append({"config_name": part, **ds_info._to_yaml_dict()})
    total = stats["totals"]["kept"]
    size = next(
        (label for limit, label in _SIZE_CATEGORIES if total < limit), "n>1M"
    )  # the Hub's size_categories vocabulary
    titles = [infos[n].title if n in infos else n for n in stats["sources"]]
    card = DatasetCardData(
        pretty_name="HumanBeauty",
        license="other",
        license_name="mixed-research-only",
        license_link="LICENSE.md",
        task_categories=["image-classification", "visual-question-answering"],
        tags=[
            "aesthetics",
            "image-aesthetic-assessment",
            "human",
            "humanbeauty",
            "arxiv:2503.23907",
        ],
        size_categories=[size],
        source_datasets=[f"extended|{t}" for t in titles],
        configs=configs,
        dataset_info=info,
    )
    return card.to_yaml()


def _licence_lines(stats: Mapping[str, Any], infos: Mapping[str, SourceInfo]) -> list[str]:
    """Each built source's terms, homepage and citation (the card's Licences section)."""
    lines = [
        "This dataset is a derivative of the sources below and inherits their terms; **most are "
        "for non-commercial research use only**. The lines below summarise each source's terms "
        "and are not legal advice: read the original terms at each homepage before use.",
        "",
    ]
    for name in stats["sources"]:
        info = infos.get(name)
        if info is None:
            lines.append(f"- **{name}**: no licence information recorded; check its origin.")
            continue
        lines.append(
            f"- **{info.title}**: {info.licence} Homepage: {info.homepage}. Cite: {info.citation}"
        )
    return lines


def licence_file(stats: Mapping[str, Any], infos: Mapping[str, SourceInfo]) -> str:
    """``LICENSE.md`` (the card's ``license_link``): every source's terms, one place."""
    return "\n".join(["# Licences of HumanBeauty's sources", "", *_licence_lines(stats, infos)])


def dataset_card(
    shards: Mapping[str, Mapping[str, list[str]]],
    stats: Mapping[str, Any],
    infos: Mapping[str, SourceInfo],
    sizes: Mapping[str, Mapping[str, tuple[int, int, int]]],
) -> str:
    """The dataset card: YAML front matter (:func:`_front_matter`) and a readable body."""
    std = load_standard()
    yaml_text = _front_matter(shards, stats, infos, sizes)
    src = stats["sources"]
    lines = [
        "---",
        yaml_text.rstrip(),
        "---",
        "",
        "# HumanBeauty",
        "",
        "Human image aesthetic assessment data built by the HumanBeauty pipeline, the open "
        f"implementation of [HumanAesExpert (arXiv:2503.23907)]({PAPER_URL}). Two "
        "configurations share one schema:",
        "",
        "- `overall`: single-face human images from public IAA datasets, one overall score per "
        "image, min-max normalised per source to [0, 1];",
        "- `fine_grained`: human images with 12 dimension scores in [0, 1], each the mean of at "
        "least the configured number of raters.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this folder or repo>", "overall", split="train")',
        "```",
        "",
        "## Rows",
        "",
        "`image` (embedded bytes, upright), `image_id` (SHA-256 of the source file), `source`, "
        "`file_name`, `raw_score` (the source's own scale, a MOS where it has raters), `score` "
        "(normalised overall score; for `fine_grained` rows the Overall Aesthetic dimension), "
        "`level`, `question`, `answer`, `dimension_scores` / `dimension_levels` / "
        "`dimension_std` (12 values in the order below; null for `overall` rows), "
        "`rater_count`, `score_std`, `width`, `height`, `faces` (every detection: box, "
        "confidence, five landmarks), `face_count`, `split`, `quick` (the per-source quick "
        "evaluation subset), `metadata` (JSON: source-specific fields).",
        "",
        "Dimension order: "
        + ", ".join(f"{d.index}. {d.name}" for d in std.dimensions)
        + ". Levels: "
        + ", ".join(
            f"{w} (<= {b:g})" for w, b in zip(std.level_words, std.level_upper_bounds, strict=True)
        )
        + ".",
        "",
        "## Sources",
        "",
        "| source | part | kept | train | test | quick | raw score range | rejected |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for s in src.values():
        rng = format_range(s["raw_score_min"], s["raw_score_max"])
        lines.append(
            f"| {s['title']} | {s['part'] or '-'} | {s['kept']} | {s['train']} | {s['test']} "
            f"| {s['quick']} | {rng} | {s['rejected_total']} |"
        )
    t = stats["totals"]
    lines += [
        f"| **total** | | {t['kept']} | {t['train']} | {t['test']} | | | {t['rejected']} |",
        "",
        "### Levels per source",
        "",
        "| source | " + " | ".join(std.level_words) + " |",
        "|---|" + "---:|" * len(std.level_words),
    ]
    for s in src.values():
        lines.append(
            f"| {s['title']} | " + " | ".join(str(s["levels"][w]) for w in std.level_words) + " |"
        )
    lines += reliability_markdown(stats.get("reliability"))
    lines += ["", "### Rejections by reason", "", "| source | reason | count |", "|---|---|---:|"]
    for s in src.values():
        for reason, n in s["rejected"].items():
            lines.append(f"| {s['title']} | {reason} | {n} |")
        if s["rejected_rating_rows"]:
            lines.append(
                f"| {s['title']} | single rating rows dropped | {s['rejected_rating_rows']} |"
            )
    lines += card_lines(stats.get("near_duplicates"))
    lines += [
        "",
        "Every rejected item is listed in `rejected.parquet` with its stage and reason.",
        "",
        "## Licences",
        "",
        *_licence_lines(stats, infos),
    ]
    lines += [
        "",
        "## Citation",
        "",
        "```bibtex",
        "@article{liao2025humanaesexpert,",
        "  title   = {HumanAesExpert: Advancing a Multi-Modality Foundation Model for Human Image "
        "Aesthetic Assessment},",
        "  author  = {Liao, Zhichao and Liu, Xiaokun and Qin, Wenyu and Li, Qingyu and Wang, "
        "Qiulin and Wan, Pengfei and Zhang, Di and Zeng, Long and Feng, Pingfa},",
        "  journal = {arXiv preprint arXiv:2503.23907},",
        "  year    = {2025}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)


_SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
)
