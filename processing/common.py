"""Pieces shared by every dataset builder in `processing/`.

Every builder follows one pattern: read the raw tables into plain records (dicts whose keys are the dataset's
columns), group them by split, turn each split into a `datasets.Dataset` with declared `Features`
(`build_dataset_dict`), and, from the command line (`cli_parser`), `save` the `DatasetDict` with a printed summary of
row and label counts. The MIMIC builders also share the admission-linking rule (`read_admissions`,
`link_admissions`) and the one-to-one matching of studies (`match_greedy`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

# CheXpert's 14 observations, in the column order of the label CSVs of CheXpert and MIMIC-CXR-JPG.
CHEXPERT_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
# The five diagnostic ECG superclasses (PTB-XL's, reused by the MIMIC-IV-ECG rules), in method.md's order.
ECG_SUPERCLASSES = ("NORM", "HYP", "STTC", "MI", "CD")


def render_ecg_report(statements: Iterable[str | None]) -> str:
    """Render ECG statements with the paper's template (method.md, Data).

    `"ECG presents {report_0}. Additional findings include the following: {report_1}, ..., {report_17}."`

    Args:
        statements: the machine statements in order (`report_0` first); blanks and None are skipped and each
            statement's own trailing period is dropped so the template's punctuation is the only one.

    Returns:
        The report text; `"ECG presents X."` alone when there is a single statement, `""` when there is none.
    """
    cleaned = [s.strip().rstrip(".").strip() for s in statements if isinstance(s, str) and s.strip().rstrip(".")]
    if not cleaned:
        return ""
    text = f"ECG presents {cleaned[0]}."
    if len(cleaned) > 1:
        text += f" Additional findings include the following: {', '.join(cleaned[1:])}."
    return text


def parse_time(value: Any, field: str = "time") -> datetime | None:
    """Parse a timestamp as the raw tables write it (ISO 8601 or `YYYY-MM-DD HH:MM:SS`).

    Args:
        value: a string, a `datetime`/`pd.Timestamp`, or a blank (None, NaN, "").
        field: the column name, used in the error message.

    Returns:
        A naive `datetime`, or None for a blank.

    Raises:
        ValueError: if `value` is not a blank and not a timestamp.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
    text = str(value).strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field}: expected an ISO 8601 time such as '2180-07-23 08:44:00', got {value!r}") from None


def to_iso(time: datetime | None) -> str | None:
    """`time` as an ISO 8601 string (`YYYY-MM-DDTHH:MM:SS`), None for None."""
    return None if time is None else time.isoformat()


def hours_apart(first: datetime, second: datetime) -> float:
    """Absolute difference between two times, in hours."""
    return abs((first - second).total_seconds()) / 3600.0


def find_table(root: Path, name: str) -> Path:
    """Locate a CSV table under `root`, compressed (`name.gz`, as PhysioNet ships most) or not.

    Args:
        root: the folder to search (not recursively).
        name: the file name, e.g. `"machine_measurements.csv"`.

    Returns:
        The path of the first of `name`, `name.gz` that exists.

    Raises:
        FileNotFoundError: naming both candidates when neither exists.
    """
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"table {name} (or {name}.gz) not found in {root}")


def read_table(root: Path, name: str, columns: Sequence[str], **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read a CSV table and check it has the columns a builder relies on.

    Args:
        root, name: as in `find_table`.
        columns: the columns that must be present (others are kept).
        read_csv_kwargs: passed to `pandas.read_csv` (e.g. `dtype`).

    Returns:
        The table as a DataFrame.

    Raises:
        FileNotFoundError: if the table is missing.
        ValueError: naming the file and the missing columns.
    """
    path = find_table(root, name)
    table = pd.read_csv(path, **read_csv_kwargs)
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    return table


def _generate_examples(
    records: Sequence[Mapping[str, Any]], make_example: Callable[[Mapping[str, Any]], dict] | None
) -> Iterable[dict]:
    for record in records:
        yield make_example(record) if make_example is not None else dict(record)


def build_dataset_dict(
    records_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    features: datasets.Features,
    description: str,
    make_example: Callable[[Mapping[str, Any]], dict] | None = None,
    num_proc: int | None = None,
) -> datasets.DatasetDict:
    """Turn records grouped by split into a `DatasetDict` with declared features (`Dataset.from_generator`).

    Args:
        records_by_split: `{split_name: records}`; each record is either an example already (keys = feature
            names) or the input of `make_example`.
        features: the declared columns of every split.
        description: stored as `info.description` of every split (written by `save_to_disk`).
        make_example: optional function record -> example, run inside the generator (in worker processes when
            `num_proc > 1`), for examples that are expensive to materialise (rendered images, read signals).
        num_proc: worker processes; the records of a split are sharded between them.

    Returns:
        The `DatasetDict`, one `Dataset` per split, in the order of `records_by_split`.
    """
    splits = {}
    for name, records in records_by_split.items():
        dataset = datasets.Dataset.from_generator(
            _generate_examples,
            features=features,
            gen_kwargs={"records": list(records), "make_example": make_example},
            num_proc=num_proc if num_proc and num_proc > 1 and len(records) > 1 else None,
            split=datasets.NamedSplit(name),
        )
        dataset.info.description = description
        splits[name] = dataset
    return datasets.DatasetDict(splits)


def class_label_counts(dataset: datasets.Dataset) -> dict[str, dict[str, int]]:
    """Count the classes of every `ClassLabel` and `Sequence(ClassLabel)` column.

    Args:
        dataset: any dataset.

    Returns:
        `{column: {class_name: count}}`, classes in label order, zero counts kept; for multi-label columns a row
        counts once for each of its classes, and rows with no class count under `"(none)"`.
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


def format_summary(dataset_dict: datasets.DatasetDict) -> str:
    """A human-readable summary: rows per split and the label counts of each split (`class_label_counts`)."""
    lines = []
    for name, dataset in dataset_dict.items():
        lines.append(f"{name}: {dataset.num_rows} rows")
        for column, counts in class_label_counts(dataset).items():
            lines.append(f"  {column}: " + ", ".join(f"{label}={count}" for label, count in counts.items()))
    return "\n".join(lines)


def save(dataset_dict: datasets.DatasetDict, out: Path) -> None:
    """`save_to_disk(out)` and print the summary (`format_summary`) with the location."""
    dataset_dict.save_to_disk(str(out))
    print(f"saved to {out}\n{format_summary(dataset_dict)}")


def cli_parser(description: str | None, roots: Sequence[str] = ("root",)) -> argparse.ArgumentParser:
    """The argument parser every builder's `main()` starts from: `--root RAW_DIR --out OUT_DIR`.

    Builders add their source-specific flags to it.

    Args:
        description: shown by `--help` (a module passes its docstring).
        roots: the names of the required raw-folder flags; a builder that reads two downloads names both
            (e.g. `("cxr_root", "ecg_root")`).

    Returns:
        A parser with one required `Path` flag per name in `roots`, and `--out` (required, `Path`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in roots:
        parser.add_argument(f"--{name}", type=Path, required=True, help="folder of the raw download")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the DatasetDict to (save_to_disk)")
    return parser


# ---- MIMIC-IV admissions: the visit a CXR study or an ECG belongs to -------------------------------------------


def read_admissions(hosp_dir: Path) -> pd.DataFrame:
    """Read MIMIC-IV's `hosp/admissions.csv(.gz)` with its times parsed.

    Args:
        hosp_dir: the `hosp` folder of MIMIC-IV (`.../mimiciv/3.1/hosp`).

    Returns:
        The table with `admittime`, `dischtime`, `edregtime` as datetimes and `visit_start`, the earlier of the
        ED registration and the admission (imaging done in the ED before admission belongs to the visit).

    Raises:
        FileNotFoundError, ValueError: as `read_table`.
    """
    table = read_table(hosp_dir, "admissions.csv", ["subject_id", "hadm_id", "admittime", "dischtime"])
    for column in ("admittime", "dischtime", "edregtime"):
        table[column] = pd.to_datetime(table[column]) if column in table else pd.NaT
    table["visit_start"] = table[["admittime", "edregtime"]].min(axis=1)
    return table


def link_admissions(
    subject_ids: Sequence[int], times: Sequence[datetime | None], admissions: pd.DataFrame
) -> list[int | None]:
    """The admission (`hadm_id`) each study falls into: same `subject_id`, time within [visit_start, dischtime].

    Args:
        subject_ids, times: one entry per study (a None time links nothing).
        admissions: as returned by `read_admissions`.

    Returns:
        One `hadm_id` or None per study; where admissions overlap, the latest-starting one.
    """
    by_subject = {
        subject: group.sort_values("visit_start", ascending=False)[["hadm_id", "visit_start", "dischtime"]]
        for subject, group in admissions.groupby("subject_id")
    }
    linked: list[int | None] = []
    for subject, time in zip(subject_ids, times):
        group = by_subject.get(subject)
        hadm_id = None
        if group is not None and time is not None:
            inside = group[(group["visit_start"] <= time) & (time <= group["dischtime"])]
            hadm_id = int(inside["hadm_id"].iloc[0]) if len(inside) else None
        linked.append(hadm_id)
    return linked


def match_greedy(candidates: Iterable[tuple[Any, int, int]]) -> list[tuple[int, int]]:
    """One-to-one matching: take candidate pairs best-first, skipping any whose left or right row is already used.

    No row is used twice (a reused ECG would be a duplicate positive in a contrastive batch).

    Args:
        candidates: `(sort_key, left_index, right_index)`; smaller keys are better (e.g. hours apart).

    Returns:
        The chosen `(left_index, right_index)` pairs, sorted by `left_index`.
    """
    used_left: set[int] = set()
    used_right: set[int] = set()
    matches = []
    for _, left_index, right_index in sorted(candidates):
        if left_index not in used_left and right_index not in used_right:
            used_left.add(left_index)
            used_right.add(right_index)
            matches.append((left_index, right_index))
    return sorted(matches)
