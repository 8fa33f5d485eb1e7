"""The dataset card of a build: fields, label rules, splits with row counts next to the paper's, source, licence and
access terms, generated from the schema and the counts only (`render_dataset_card`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.features.features import FeatureType
from huggingface_hub import DatasetCard, DatasetCardData

from .counts import count_summary, format_number
from .features import COLUMN_DESCRIPTIONS


@dataclass(frozen=True)
class DataSource:
    """Where a saved dataset comes from and on what terms: what its card states beyond the data's own shape.

    Attributes:
        name: the builder's name (`"mimic_ecg"`), the key of the paper's numbers (`PAPER_SPLIT_ROWS`,
            `PAPER_LABEL_ROWS` of `paper_counts`); a name without paper numbers (the synthetic demo's) gets none.
        homepage: where the raw data is downloaded (a URL), or a sentence for generated data.
        license: the Hub's licence id of the data (`"cc-by-4.0"`, `"odbl"`, `"other"`).
        access: who may use the data and what is built from it, and whether it may be shared.
        label_rules: how the rows, texts, labels and splits were made (a builder passes its module docstring).
        license_name, license_link: with licence `"other"`: a short id of the terms and their URL.
    """

    name: str
    pretty_name: str
    homepage: str
    license: str
    access: str
    label_rules: str
    license_name: str | None = None
    license_link: str | None = None


def _size_category(rows: int) -> str:
    # The Hub's size_categories buckets.
    for limit, category in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return category
    return "1M<n<10M" if rows < 10_000_000 else "n>10M"


def _describe_feature(feature: FeatureType) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return "class label: " + ", ".join(feature.names)
    if isinstance(feature, datasets.List):
        return f"list of {_describe_feature(feature.feature)}"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
        return f"array {tuple(feature.shape)} {feature.dtype}"
    return type(feature).__name__.lower()


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def shareable_options(build_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A builder's options as a card and `summary.json` list them."""
    # A path into the raw download differs per machine and may name its owner: only whether it was given is kept
    # (`"<path>"`, or None where an optional input was not given).
    return {
        key: "<path>" if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        for key, value in (build_options or {}).items()
    }


def render_dataset_card(
    dataset_dict: datasets.DatasetDict,
    source: DataSource,
    build_options: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> DatasetCard:
    """The dataset card of a build: fields, label rules, splits with row counts (next to the paper's), source,
    licence and access terms.

    Everything in it comes from the schema (`Features`), the row and class counts (`count_summary`), the builder's
    description and `source`: never from a row, so no report text, id or other value of the data can reach it.

    Args:
        build_options: the builder's arguments, listed so that the build can be repeated (`shareable_options`).
        summary: `count_summary(dataset_dict, source.name)` where the caller has it (counting reads every label).
    """
    if not dataset_dict:
        raise ValueError(f"{source.name}: the build has no split, so no rows to describe; check the raw folder")
    summary = summary if summary is not None else count_summary(dataset_dict, source.name)
    first = next(iter(dataset_dict.values()))
    metadata = DatasetCardData(
        pretty_name=source.pretty_name,
        license=source.license,
        size_categories=[_size_category(sum(split.num_rows for split in dataset_dict.values()))],
        tags=["medical", "medbind"],
        **{key: value for key, value in (("license_name", source.license_name),
                                          ("license_link", source.license_link)) if value is not None},
    )
    licence = source.license + (f" ({source.license_name}: {source.license_link})" if source.license_link else "")
    split_rows = [
        (split, format_number(c["rows"]), format_number(c["paper"]))
        for split, c in {**summary["splits"], "all": summary["total"]}.items()
    ]
    label_rows = [
        (
            f"{column}: {label}",
            *(format_number(summary["labels_by_split"][s][column].get(label, 0)) for s in dataset_dict),
            format_number(c["rows"]),
            format_number(c["paper"]),
        )
        for column, classes in summary["labels"].items() for label, c in classes.items()
    ]
    fields = [(f"`{name}`", _describe_feature(feature), COLUMN_DESCRIPTIONS.get(name, ""))
              for name, feature in first.features.items()]
    options = shareable_options(build_options)
    paper_note = f"Paper numbers: {summary['paper']}." if summary["paper"] else "The paper publishes no numbers for it."
    sections = [
        f"# {source.pretty_name}",
        first.info.description or "",
        (
            "Built with MedBind's dataset builders (`medbind_processing`, "
            "[MEDBind, arXiv 2403.12894](https://arxiv.org/abs/2403.12894)). Load it with "
            "`datasets.load_from_disk(FOLDER)`. This card is generated from the schema and the row counts only."
        ),
        f"## Source\n\n{source.homepage}",
        f"## Licence and access\n\nLicence: {licence}\n\n{source.access}",
        f"## Splits\n\n{_markdown_table(('split', 'rows', 'paper'), split_rows)}\n\n{paper_note}",
    ]
    if label_rows:
        header = ("class", *dataset_dict, "all", "paper")
        sections.append(f"## Labels\n\nRows per class (a multi-label row counts once per class).\n\n"
                        f"{_markdown_table(header, label_rows)}")
    sections += [
        f"## Fields\n\n{_markdown_table(('column', 'type', 'meaning'), fields)}",
        f"## How the rows, texts, labels and splits were made\n\n{source.label_rules.strip()}",
    ]
    if options:
        rows = [(f"`{key}`", f"`{json.dumps(value)}`") for key, value in options.items()]
        sections.append(f"## Build options\n\n{_markdown_table(('option', 'value'), rows)}")
    return DatasetCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
