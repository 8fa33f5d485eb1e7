"""Pieces shared by every dataset builder in `processing/`.

Every builder follows one pattern: read the raw tables into plain records (dicts whose keys are the dataset's
columns), group them by split, turn each split into a `datasets.Dataset` with declared `Features`
(`build_dataset_dict`; the column conventions of CXR and ECG datasets are `cxr_features` and `ecg_features`), and,
from the command line (`cli_parser`, `run_cli`), `save` the `DatasetDict` with a printed summary of row and label
counts. The MIMIC builders also share the admission-linking rule (`read_admissions`, `link_admissions`) and the
one-to-one matching of studies (`match_greedy`).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from datasets.features.features import FeatureType

from .splits import DEFAULT_SEED

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


# ---- column conventions (issue 5): every CXR and ECG dataset names and types a concept the same way ----------------


def _columns_with_labels(
    standard: Mapping[str, FeatureType],
    label: Sequence[str] | None,
    labels: Sequence[str] | None,
    drop: Iterable[str],
    columns: Mapping[str, FeatureType],
) -> datasets.Features:
    drop = set(drop)
    unknown = sorted(drop - set(standard))
    if unknown:
        raise ValueError(f"cannot drop {unknown}: not among the standard columns {list(standard)}")
    features = {name: columns.get(name, feature) for name, feature in standard.items() if name not in drop}
    features.update({name: feature for name, feature in columns.items() if name not in standard})
    if label is not None:
        features["label"] = datasets.ClassLabel(names=list(label))
    if labels is not None:
        # `List`, not `Sequence`: datasets 4+ turns `Sequence(ClassLabel)` into a `List` anyway and recommends `List`.
        features["labels"] = datasets.List(datasets.ClassLabel(names=list(labels)))
    return datasets.Features(features)


def cxr_features(
    *,
    label: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    drop: Iterable[str] = (),
    **columns: FeatureType,
) -> datasets.Features:
    """The columns of a chest X-ray dataset, by the shared conventions, with a source's differences.

    Standard columns, in this order: `image` (`Image`), `text` (report), `subject_id` (int64), `study_id` (int64),
    `hadm_id` (int64, None where unknown), `study_time` (ISO 8601 string, None if unknown), `view` (string); then
    the source's own columns; then the label column.

    Args:
        label: class names of a single-label set: a `label` column (`ClassLabel`, classes in this order).
        labels: class names of a multi-label set: a `labels` column (`List(ClassLabel)`).
        drop: standard columns the source lacks (e.g. `"text"` for a label-only set).
        columns: a standard column's type where the source differs (`study_id=Value("string")` for a source
            without integer ids, kept in its place), or a column of the source's own (added after the standard ones).

    Returns:
        The `Features`.

    Raises:
        ValueError: if `drop` names a column that is not standard.
    """
    standard = {
        "image": datasets.Image(),
        "text": datasets.Value("string"),
        "subject_id": datasets.Value("int64"),
        "study_id": datasets.Value("int64"),
        "hadm_id": datasets.Value("int64"),
        "study_time": datasets.Value("string"),
        "view": datasets.Value("string"),
    }
    return _columns_with_labels(standard, label, labels, drop, columns)


def ecg_features(
    *,
    ecg: datasets.Array2D | None = None,
    label: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    drop: Iterable[str] = (),
    **columns: FeatureType,
) -> datasets.Features:
    """The columns of a 12-lead ECG dataset, by the shared conventions, with a source's differences.

    Standard columns, in this order: `ecg_path` (absolute WFDB record path without extension; the processor reads
    it), `sampling_rate` (int64, the rate of that record), `text` (report), `subject_id` (int64), `study_id` (int64),
    `hadm_id` (int64, None where unknown), `ecg_time` (ISO 8601 string, None if unknown); then the source's own
    columns; then the label column.

    Args:
        ecg: the type of the signal itself (`Array2D((12, samples), "float32")`, already at 100 Hz), stored as an
            `ecg` column in place of `ecg_path` (the synthetic demo); None: `ecg_path`.
        label, labels, drop, columns: as in `cxr_features`.

    Returns:
        The `Features`.

    Raises:
        ValueError: if `drop` names a column that is not standard.
    """
    standard = {
        **({"ecg": ecg} if ecg is not None else {"ecg_path": datasets.Value("string")}),
        "sampling_rate": datasets.Value("int64"),
        "text": datasets.Value("string"),
        "subject_id": datasets.Value("int64"),
        "study_id": datasets.Value("int64"),
        "hadm_id": datasets.Value("int64"),
        "ecg_time": datasets.Value("string"),
    }
    return _columns_with_labels(standard, label, labels, drop, columns)


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


# Set inside `building_on_disk`: the folder under which `build_dataset_dict` leaves its Arrow files.
_ON_DISK_FOLDER: contextvars.ContextVar[str | None] = contextvars.ContextVar("on_disk_folder", default=None)


@contextlib.contextmanager
def building_on_disk(parent: Path | None = None) -> Iterator[None]:
    """Inside this block, `build_dataset_dict` keeps the datasets it builds on disk, in a temporary folder that is
    removed when the block ends, instead of in memory.

    For builds that are saved before the block ends (`run_cli`, `demo.save_demo`): then no split has to fit in memory
    (RSNA's 26,684 radiographs, decoded and stored as PNG, are some 10-15 GB). Datasets built inside the block must
    not be read after it.

    Args:
        parent: where to create the temporary folder (e.g. beside the output, on the disk that must hold it anyway);
            None: the system's temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix=".medbind-build-", dir=parent) as folder:
        token = _ON_DISK_FOLDER.set(folder)
        try:
            yield
        finally:
            _ON_DISK_FOLDER.reset(token)


def build_dataset_dict(
    records_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    features: datasets.Features,
    description: str,
    make_example: Callable[[Mapping[str, Any]], dict] | None = None,
    num_proc: int | None = None,
) -> datasets.DatasetDict:
    """Turn records grouped by split into a `DatasetDict` with declared features (`Dataset.from_generator`).

    Each build writes its Arrow files to a fresh temporary folder: `from_generator`'s own cache is keyed on the
    generator's arguments, so rebuilding from raw files changed under the same paths would return the old build, and
    it would keep a second copy of every dataset beside `save_to_disk`'s. The datasets are loaded into memory and the
    folder removed (MIMIC-IV-ECG's ~800k rows of paths and texts are a few hundred MB, the demo's PNGs ~100 MB);
    inside `building_on_disk` they stay on disk until that block ends.

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
    on_disk_folder = _ON_DISK_FOLDER.get()
    in_memory = on_disk_folder is None
    folder = (
        tempfile.TemporaryDirectory(prefix="medbind-build-")
        if in_memory
        else contextlib.nullcontext(tempfile.mkdtemp(dir=on_disk_folder))  # removed with the block's folder
    )
    with folder as cache_dir:
        splits = {
            name: datasets.Dataset.from_generator(
                _generate_examples,
                features=features,
                cache_dir=cache_dir,
                keep_in_memory=in_memory,
                gen_kwargs={"records": list(records), "make_example": make_example},
                num_proc=num_proc if num_proc and num_proc > 1 and len(records) > 1 else None,
                split=datasets.NamedSplit(name),
            )
            for name, records in records_by_split.items()
        }
    for dataset in splits.values():
        dataset.info.description = description
    return datasets.DatasetDict(splits)


def class_label_counts(dataset: datasets.Dataset) -> dict[str, dict[str, int]]:
    """Count the classes of every `ClassLabel` and `List(ClassLabel)` column.

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



def run_cli(
    build: Callable[..., datasets.DatasetDict], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> None:
    """A builder's `main()`: parse the command line, build, and `save` to `--out`.

    Every flag but `--out` is passed to `build` as the keyword argument of its name (`--root` -> `root`), so a
    builder's flags are named after its parameters. The build stays on disk beside `--out` until it is saved
    (`building_on_disk`).

    Args:
        build: the builder, e.g. `build_ptbxl`.
        parser: from `cli_parser`, with the builder's own flags added.
        argv: the arguments (None: the command line's).

    Raises:
        SystemExit: on bad flags (argparse); whatever `build` raises.
    """
    arguments = vars(parser.parse_args(argv))
    out = Path(arguments.pop("out"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with building_on_disk(out.parent):
        save(build(**arguments), out)


# The flags the MIMIC builders share, for `add_mimic_flags`: the keyword arguments of `ArgumentParser.add_argument`.
_MIMIC_FLAGS: dict[str, dict[str, Any]] = {
    "reports": {"type": Path, "default": None, "help": "mimic-cxr-reports.zip or its unzipped folder"},
    "notes": {"type": Path, "default": None, "help": "CSV of ECG notes (note_id, text)"},
    "hosp": {"type": Path, "default": None, "help": "MIMIC-IV hosp/ folder (admissions) for hadm_id"},
    "seed": {"type": int, "default": DEFAULT_SEED, "help": "patient split seed shared by MIMIC sets"},
}


def add_mimic_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add flags shared by the MIMIC builders to `parser`, the same everywhere.

    Args:
        parser: from `cli_parser`.
        names: any of `--reports` (MIMIC-CXR reports zip or folder), `--notes` (CSV of ECG notes), `--hosp`
            (MIMIC-IV `hosp/`, for `hadm_id`), `--seed` (the shared patient split seed), without the dashes.

    Raises:
        KeyError: for another name.
    """
    for name in names:
        parser.add_argument(f"--{name}", **_MIMIC_FLAGS[name])

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
