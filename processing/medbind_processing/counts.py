"""Rows per split and per class of a build, next to the paper's (`paper_counts`): what `summary.json` holds and the
command line prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import datasets

from .paper_counts import PAPER_LABEL_ROWS, PAPER_REFERENCE, PAPER_SPLIT_ROWS, paper_total_rows
from .splits import SPLIT_NAMES


def class_label_counts(dataset: datasets.Dataset) -> dict[str, dict[str, int]]:
    """Count the classes of every `ClassLabel` and `List(ClassLabel)` column: `{column: {class_name: count}}`.

    Classes in label order, zero counts kept; in a multi-label column a row counts once for each of its classes,
    and rows with no class count under `"(none)"`.
    """
    counts: dict[str, dict[str, int]] = {}
    for column, feature in dataset.features.items():
        multi = isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.ClassLabel)
        class_label = feature.feature if multi else feature
        if not isinstance(class_label, datasets.ClassLabel):
            continue
        values = dataset[column]
        tally = Counter(label for row in values for label in row) if multi else Counter(values)
        column_counts = {name: tally.get(index, 0) for index, name in enumerate(class_label.names)}
        if multi:
            column_counts["(none)"] = sum(1 for row in values if not row)
        elif None in tally:
            column_counts["(none)"] = tally[None]
        counts[column] = column_counts
    return counts


def format_summary(
    dataset_dict: datasets.DatasetDict, label_counts: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None
) -> str:
    """A human-readable summary: rows per split and the label counts of each split (`class_label_counts`, or
    `label_counts[split]` where the caller has counted them already, as `count_summary`'s `labels_by_split`)."""
    lines = []
    for name, dataset in dataset_dict.items():
        lines.append(f"{name}: {dataset.num_rows} rows")
        split_counts = label_counts[name] if label_counts is not None else class_label_counts(dataset)
        for column, counts in split_counts.items():
            lines.append(f"  {column}: " + ", ".join(f"{label}={count}" for label, count in counts.items()))
    return "\n".join(lines)


def count_summary(dataset_dict: datasets.DatasetDict, name: str) -> dict[str, Any]:
    """Rows per split and per class of a build, each next to the paper's number (the content of `summary.json`).

    `name` is the builder's, the key of `PAPER_SPLIT_ROWS` and `PAPER_LABEL_ROWS`. Returns `{"dataset": name,
    "paper": PAPER_REFERENCE or None, "total": {"rows", "paper"}, "splits": {split: {"rows", "paper"}},
    "labels": {column: {class: {"rows", "paper"}}}, "labels_by_split": {split: {column: {class: rows}}}}`; `total` is
    the rows over all splits. Splits are the build's and those the paper has (0 rows where the build lacks one),
    train / validation / test first; class rows are summed over the splits (`class_label_counts`); `paper` is None
    where the paper states no number (or has no such split).
    """
    paper_splits = PAPER_SPLIT_ROWS.get(name, {})
    paper_labels = PAPER_LABEL_ROWS.get(name, {})
    known = [split for split in SPLIT_NAMES if split in dataset_dict or paper_splits.get(split)]
    names = [*known, *(split for split in dataset_dict if split not in known)]
    splits = {
        split: {"rows": dataset_dict[split].num_rows if split in dataset_dict else 0, "paper": paper_splits.get(split)}
        for split in names
    }
    by_split = {split: class_label_counts(dataset) for split, dataset in dataset_dict.items()}
    labels: dict[str, dict[str, dict[str, int | None]]] = {}
    for counts in by_split.values():
        for column, column_counts in counts.items():
            for label, rows in column_counts.items():
                entry = labels.setdefault(column, {}).setdefault(label, {"rows": 0, "paper": paper_labels.get(label)})
                entry["rows"] += rows
    return {
        "dataset": name,
        "paper": PAPER_REFERENCE if name in PAPER_SPLIT_ROWS else None,
        "total": {"rows": sum(split.num_rows for split in dataset_dict.values()), "paper": paper_total_rows(name)},
        "splits": splits,
        "labels": labels,
        "labels_by_split": by_split,
    }


def format_number(value: int | None) -> str:
    """A count with thousands separators, `-` for None (no such number)."""
    return "-" if value is None else f"{value:,}"


def format_counts(summary: Mapping[str, Any]) -> str:
    """A table of `count_summary`: rows per split, then per class (all splits), built next to the paper's."""
    source = f"paper: {summary['paper']}" if summary["paper"] else "paper: no published numbers for this dataset"
    lines = [f"{'split':<24}{'built':>10}{'paper':>10}   ({source})"]
    for split, c in {**summary["splits"], "all splits": summary["total"]}.items():
        lines.append(f"{split:<24}{format_number(c['rows']):>10}{format_number(c['paper']):>10}")
    for column, classes in summary["labels"].items():
        lines.append(f"{column + ' (all splits)':<24}{'built':>10}{'paper':>10}")
        for label, c in classes.items():
            lines.append(f"  {label:<22}{format_number(c['rows']):>10}{format_number(c['paper']):>10}")
    return "\n".join(lines)
