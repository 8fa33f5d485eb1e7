"""Pieces shared by every dataset builder in `processing/`.

Every builder follows one pattern: read the raw tables into plain records (dicts whose keys are the dataset's
columns), group them by split, turn each split into a `datasets.Dataset` with declared `Features`
(`build_dataset_dict`; the column conventions of CXR and ECG datasets are `cxr_features` and `ecg_features`), and,
from the command line (`cli_parser`, `run_cli`), `save` the `DatasetDict` with a printed summary of row and label
counts next to the paper's (`PAPER_SPLIT_ROWS`, `PAPER_LABEL_ROWS`), saved as `summary.json`, and a dataset card
(`save`, `render_dataset_card`) stating fields, label rules, splits, source and access terms (`DataSource`). The CXR builders
store their radiographs through one helper (`stored_radiograph`: shrunk at build time, bit depth kept). The MIMIC
builders also share the admission-linking rule (`read_admissions`, `link_admissions`) and the one-to-one matching of
studies (`match_greedy`).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import io
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
from datasets.features.features import FeatureType
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image, UnidentifiedImageError

from .splits import DEFAULT_SEED, SPLIT_NAMES

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
# The five findings of the CheXpert competition (CheXpert 5x200's classes), in GLoRIA's and MedCLIP's order.
CHEXPERT_COMPETITION_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# The five diagnostic ECG superclasses (PTB-XL's, reused by the MIMIC-IV-ECG rules), in method.md's order.
ECG_SUPERCLASSES = ("NORM", "HYP", "STTC", "MI", "CD")

# ---- the paper's numbers: every builder's summary and card compare its build with these -------------------------

PAPER_REFERENCE = "MEDBind (arXiv 2403.12894), Table 1 and Table A.4"
# Rows per split as the paper reports them (method.md, Data), by builder name; None: the paper has no such split.
PAPER_SPLIT_ROWS: dict[str, dict[str, int | None]] = {
    "mimic_cxr": {"train": 86_853, "validation": 12_059, "test": 24_799},
    "mimic_ecg": {"train": 88_291, "validation": 12_065, "test": 24_644},
    "mimic_pair": {"train": 22_397, "validation": 3_292, "test": 6_664},
    "mimic_outcomes": {"train": 218_787, "validation": 40_995, "test": 72_473},
    "ptbxl": {"train": 17_415, "validation": 2_183, "test": 2_198},
    "cpsc2018": {"train": 5_501, "validation": None, "test": 1_376},
    "covid": {"train": 11_028, "validation": None, "test": 2_780},
    "rsna": {"train": 18_678, "validation": None, "test": 5_338},
    "openi": {"train": None, "validation": None, "test": 3_269},
    "chexpert5x200": {"train": None, "validation": None, "test": 1_000},
}
# Rows per class over all splits where the paper states them: MIMIC-IV-ECG's single-label classes (Table A.4; they
# sum to the 125,000 rows above), the COVID-19 Radiography Database's two classes, and CheXpert 5x200 by definition.
PAPER_LABEL_ROWS: dict[str, dict[str, int]] = {
    "mimic_ecg": {"NORM": 34_097, "HYP": 11_305, "STTC": 28_918, "MI": 19_242, "CD": 31_438},
    "covid": {"Normal": 10_192, "COVID-19": 3_616},
    "chexpert5x200": {name: 200 for name in CHEXPERT_COMPETITION_FINDINGS},
}


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

    Standard columns, in this order: `image` (`Image`), `image_path` (the original file, string; None for a
    synthetic image), `text` (report), `subject_id` (int64), `study_id` (int64), `hadm_id` (int64, None where
    unknown), `study_time` (ISO 8601 string, None if unknown), `view` (string); then the source's own columns; then
    the label column.

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
        "image_path": datasets.Value("string"),
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


# What each column means, for the dataset cards (`render_dataset_card`); a builder's own rules are in its docstring.
COLUMN_DESCRIPTIONS = {
    "image": "the chest radiograph",
    "image_path": "the radiograph's original file in the raw download (None for a synthetic image)",
    "ecg_path": "WFDB record path without extension (the processor reads it)",
    "ecg_path_500hz": "WFDB record path of the 500 Hz version",
    "ecg": "the 12-lead signal, leads x samples at 100 Hz, mV",
    "sampling_rate": "sampling rate of the record in `ecg_path`, Hz",
    "text": "report text",
    "subject_id": "patient id",
    "study_id": "study (image, record) id",
    "hadm_id": "hospital admission (visit) id; None where unknown",
    "study_time": "acquisition time, ISO 8601; None if unknown",
    "ecg_time": "recording time, ISO 8601; None if unknown",
    "view": "radiographic view (AP, PA, ...)",
    "strat_fold": "PTB-XL's stratified fold (1-10)",
    "label": "the class (single-label)",
    "labels": "the classes (multi-label list)",
    "cxr_study_id": "the linked chest radiograph study; None where none",
    "ecg_study_id": "the linked ECG study; None where none",
    "link": "how the pair was linked: `hadm_id` (same visit) or `time` (within 24 h)",
    "hours_apart": "hours between the two studies",
    "admittime": "admission time, ISO 8601",
    "mortality_text": "demographics template text for the mortality task",
    "readmission_text": "discharge summary for the readmission task; None where none",
    "mortality": "died in hospital",
    "readmission": "readmitted within 30 days of discharge",
    "cxr_text": "report of the linked chest radiograph study; None where none",
    "ecg_text": "report of the linked ECG study; None where none",
}


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


# ---- radiographs stored at build time (issue 13.7): small enough that a loader worker keeps up with the GPU -------

# A full-size radiograph takes ~30-130 ms to decode on one core; at 512 pixels on the shorter side ~0.4-4 ms
# (`_encoded`), and the image processor's own resize works on 25x fewer pixels. 512 keeps 2x headroom above the
# 224-256 pixel inputs of the CXR tower.
DEFAULT_SHORTEST_EDGE = 512
# Modes stored as they are: 8-bit grey and colour (with alpha) and 16-bit grey.
_STORED_MODES = ("L", "LA", "RGB", "RGBA", "I;16")
# Modes turned into one of those before resizing: bilevel to grey, palettes and other colour spaces to RGB.
_CONVERTED_MODES = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
# Integer modes holding 16-bit data in another layout (32-bit "I" from TIFF or DICOM, byte-order variants).
_SIXTEEN_BIT_MODES = ("I", "I;16B", "I;16L", "I;16N")


def shrunk_size(size: tuple[int, int], shortest_edge: int) -> tuple[int, int] | None:
    """The size of an image shrunk so that its shorter side is `shortest_edge`, aspect ratio kept.

    Args:
        size: `(width, height)`.
        shortest_edge: the target length of the shorter side, > 0.

    Returns:
        `(width, height)` with the shorter side exactly `shortest_edge` and the longer one rounded, or None when the
        shorter side is already at most `shortest_edge` (images are never enlarged).
    """
    width, height = size
    if min(width, height) <= shortest_edge:
        return None
    if width <= height:
        return shortest_edge, max(1, round(height * shortest_edge / width))
    return max(1, round(width * shortest_edge / height)), shortest_edge


def _storable(image: Image.Image, origin: str) -> Image.Image:
    """`image` in one of `_STORED_MODES`, its bit depth kept (16-bit stays 16-bit)."""
    if image.mode in _STORED_MODES:
        return image
    if image.mode in _CONVERTED_MODES:
        return image.convert(_CONVERTED_MODES[image.mode])
    if image.mode in _SIXTEEN_BIT_MODES:
        low, high = image.getextrema()
        if 0 <= low and high <= 65535:
            return Image.fromarray(np.asarray(image).astype(np.uint16))
        raise ValueError(f"{origin}: integer image with values {low}..{high}, expected 16-bit values 0..65535")
    raise ValueError(
        f"{origin}: image mode {image.mode!r} is not a radiograph's (expected 8-bit grey or colour, or 16-bit grey)"
    )


def _encoded(image: Image.Image) -> bytes:
    # Chosen for decode speed of a 512 x 614 radiograph on one core (Pillow 13): 8-bit PNG ~4 ms (uncompressed TIFF
    # would be 0.4 ms but 2-5x the disk); 16-bit PNG ~11 ms, too slow for 100 images/s, uncompressed 16-bit TIFF
    # ~0.4 ms for 1.45x the PNG's bytes. Both are lossless and read back in the mode written (`L`, `RGB`, `I;16`).
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if image.mode == "I;16" else "PNG")
    return buffer.getvalue()


def stored_radiograph(
    image: str | Path | Image.Image, shortest_edge: int | None = DEFAULT_SHORTEST_EDGE
) -> str | dict[str, bytes | None]:
    """The value a CXR builder stores in its `image` column (`datasets.Image`), shrunk at build time.

    With `shortest_edge` (default 512), the dataset holds the images itself, so the raw download is no longer needed
    and a loader decodes small files: an image larger than that is shrunk so that its shorter side is
    `shortest_edge` (Lanczos, antialiased; a JPEG is first decoded at a reduced DCT scale of at least twice the
    target, as Pillow's `thumbnail` does) and stored losslessly with its bit depth: 8-bit grey or colour as PNG,
    16-bit grey (`I;16`) as uncompressed TIFF, the encodings that decode fastest for their size (a 512 x 614
    radiograph on one core: 8-bit PNG ~4 ms and ~100-150 KB for a real radiograph, so MIMIC-CXR-JPG's ~124k studies
    take ~12-19 GB; 16-bit TIFF ~0.4 ms and ~615 KB, where a 16-bit PNG takes ~11 ms). An image already no larger
    is stored as its original file's bytes, unchanged. With `shortest_edge` 0 or None a file is stored as its path
    (decoded lazily from the download, which must stay where it is) and a decoded image as above, at full size.

    Args:
        image: the radiograph's file (any format Pillow reads), or an image already decoded (a DICOM's pixels).
        shortest_edge: the shorter side in pixels after shrinking; 0 or None keeps the originals.

    Returns:
        A path string, or `{"bytes": ..., "path": None}` (the original file in `image_path` says where it came from).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, if it is not an image or its mode is not a radiograph's (8-bit grey or colour,
            16-bit grey; bilevel, palette and other colour spaces are converted, other integer images must hold
            values 0-65535).
    """
    if isinstance(image, Image.Image):
        target = shrunk_size(image.size, shortest_edge) if shortest_edge else None
        image = _storable(image, f"decoded image (mode {image.mode}, size {image.size})")
        return {"bytes": _encoded(image.resize(target, Image.Resampling.LANCZOS) if target else image), "path": None}
    path = Path(image)
    if not shortest_edge:
        return str(path)
    try:
        opened = Image.open(path)
    except UnidentifiedImageError as error:
        raise ValueError(f"{path}: not an image file Pillow can read ({error})") from None
    with opened:
        target = shrunk_size(opened.size, shortest_edge)
        if target is None:
            return {"bytes": path.read_bytes(), "path": None}
        opened.draft(opened.mode, (2 * target[0], 2 * target[1]))  # JPEG only; a no-op for other formats
        shrunk = _storable(opened, str(path)).resize(target, Image.Resampling.LANCZOS)
    return {"bytes": _encoded(shrunk), "path": None}


def radiograph_example(record: Mapping[str, Any], shortest_edge: int | None) -> dict[str, Any]:
    """A CXR record with its `image` made from its `image_path` by `stored_radiograph`.

    The `make_example` of the CXR builders (with `functools.partial` for `shortest_edge`), so that the decoding and
    shrinking run in `build_dataset_dict`'s worker processes.
    """
    return {**record, "image": stored_radiograph(record["image_path"], shortest_edge)}


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
    (RSNA's 26,684 radiographs, decoded and stored as PNG, are some 3-4 GB at 512 pixels, 10-15 GB at full size).
    Datasets built inside the block must not be read after it.

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


# ---- what a saved dataset states about itself: counts next to the paper's, and a dataset card ------------------


@dataclass(frozen=True)
class DataSource:
    """Where a saved dataset comes from and on what terms: what its card states beyond the data's own shape.

    Attributes:
        name: the builder's name (`"mimic_ecg"`), the key of the paper's numbers (`PAPER_SPLIT_ROWS`,
            `PAPER_LABEL_ROWS`); a name without paper numbers (the synthetic demo's) gets none.
        pretty_name: the card's title.
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


def count_summary(dataset_dict: datasets.DatasetDict, name: str) -> dict[str, Any]:
    """Rows per split and per class of a build, each next to the paper's number (the content of `summary.json`).

    Args:
        dataset_dict: the build.
        name: the builder's name, the key of `PAPER_SPLIT_ROWS` and `PAPER_LABEL_ROWS`.

    Returns:
        `{"dataset": name, "paper": PAPER_REFERENCE or None, "splits": {split: {"rows", "paper"}},
        "labels": {column: {class: {"rows", "paper"}}}, "labels_by_split": {split: {column: {class: rows}}}}`.
        Splits are the build's and those the paper has (0 rows where the build lacks one), train / validation / test
        first; class rows are summed over the splits (`class_label_counts`: a multi-label row counts once per class,
        `(none)` counts unlabelled rows); `paper` is None where the paper states no number (or has no such split).
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
        "splits": splits,
        "labels": labels,
        "labels_by_split": by_split,
    }


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_counts(summary: Mapping[str, Any]) -> str:
    """A table of `count_summary`: rows per split, then per class (all splits), built next to the paper's."""
    source = f"paper: {summary['paper']}" if summary["paper"] else "paper: no published numbers for this dataset"
    lines = [f"{'split':<24}{'built':>10}{'paper':>10}   ({source})"]
    lines += [f"{split:<24}{_number(c['rows']):>10}{_number(c['paper']):>10}" for split, c in summary["splits"].items()]
    for column, classes in summary["labels"].items():
        lines.append(f"{column + ' (all splits)':<24}{'built':>10}{'paper':>10}")
        lines += [f"  {label:<22}{_number(c['rows']):>10}{_number(c['paper']):>10}" for label, c in classes.items()]
    return "\n".join(lines)


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


def _shareable_options(build_options: Mapping[str, Any] | None) -> dict[str, Any]:
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
        dataset_dict: the build.
        source: where it comes from and on what terms.
        build_options: the builder's arguments, listed so that the build can be repeated (a path shows as
            `"<path>"`: only whether it was given).
        summary: `count_summary(dataset_dict, source.name)` where the caller has it (counting reads every label).

    Returns:
        A `huggingface_hub.DatasetCard` (YAML metadata: pretty_name, license, size_categories, tags).

    Raises:
        ValueError: if `dataset_dict` has no split (a build that found no rows).
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
    split_rows = [(split, _number(c["rows"]), _number(c["paper"])) for split, c in summary["splits"].items()]
    label_rows = [
        (f"{column}: {label}", *(_number(summary["labels_by_split"][s][column].get(label, 0)) for s in dataset_dict),
         _number(c["rows"]), _number(c["paper"]))
        for column, classes in summary["labels"].items() for label, c in classes.items()
    ]
    fields = [(f"`{name}`", _describe_feature(feature), COLUMN_DESCRIPTIONS.get(name, ""))
              for name, feature in first.features.items()]
    options = _shareable_options(build_options)
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


def save(
    dataset_dict: datasets.DatasetDict,
    out: Path,
    source: DataSource,
    build_options: Mapping[str, Any] | None = None,
) -> None:
    """`save_to_disk(out)`, then beside the data `summary.json` (`count_summary` and the build options) and the
    dataset card `README.md` (`render_dataset_card`); prints the location, the
    per-split label counts (`format_summary`) and the counts next to the paper's (`format_counts`).

    Args:
        dataset_dict: the build.
        out: the folder to write.
        source: where the data comes from and on what terms.
        build_options: the builder's arguments, recorded in `summary.json` and the card (a path shows only as
            `"<path>"`).

    Raises:
        ValueError: if the build has no split (nothing is written then).
    """
    out = Path(out)
    summary = count_summary(dataset_dict, source.name)  # one pass over the labels serves all three outputs
    card = render_dataset_card(dataset_dict, source, build_options, summary)
    dataset_dict.save_to_disk(str(out))
    recorded = {**summary, "build_options": _shareable_options(build_options)}
    (out / "summary.json").write_text(json.dumps(recorded, indent=2) + "\n")
    card.save(out / "README.md")
    listing = format_summary(dataset_dict, summary["labels_by_split"])
    print(f"saved to {out}\n{listing}\n{format_counts(summary)}\ncard: {out / 'README.md'}")


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


def add_image_flags(parser: argparse.ArgumentParser) -> None:
    """Add the CXR builders' flags: `--shortest_edge` (`stored_radiograph`) and `--num_proc`.

    Args:
        parser: from `cli_parser`.
    """
    parser.add_argument(
        "--shortest_edge", type=int, default=DEFAULT_SHORTEST_EDGE,
        help="store radiographs shrunk to this many pixels on the shorter side, losslessly in the dataset (0: store "
             "paths to the original files)",
    )
    parser.add_argument("--num_proc", type=int, default=None, help="processes decoding and shrinking the images")


def run_cli(
    build: Callable[..., datasets.DatasetDict],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    source: DataSource,
) -> None:
    """A builder's `main()`: parse the command line, build, and `save` to `--out` with its summary and card.

    Every flag but `--out` is passed to `build` as the keyword argument of its name (`--root` -> `root`), so a
    builder's flags are named after its parameters; the flags are also the card's build options. The build stays
    on disk beside `--out` until it is saved (`building_on_disk`).

    Args:
        build: the builder, e.g. `build_ptbxl`.
        parser: from `cli_parser`, with the builder's own flags added.
        argv: the arguments (None: the command line's).
        source: the builder's source and terms, for the card.

    Raises:
        SystemExit: on bad flags (argparse); whatever `build` raises.
    """
    arguments = vars(parser.parse_args(argv))
    out = Path(arguments.pop("out"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with building_on_disk(out.parent):
        save(build(**arguments), out, source, arguments)


# The flags the MIMIC builders share, for `add_mimic_flags`: the keyword arguments of `ArgumentParser.add_argument`.
_MIMIC_FLAGS: dict[str, dict[str, Any]] = {
    "reports": {"type": Path, "default": None, "help": "mimic-cxr-reports.zip or its unzipped folder"},
    "notes": {"type": Path, "default": None, "help": "CSV of ECG notes (note_id, text)"},
    "hosp": {"type": Path, "default": None, "help": "MIMIC-IV hosp/ folder (admissions) for hadm_id"},
    "seed": {"type": int, "default": DEFAULT_SEED, "help": "patient split seed shared by MIMIC sets"},
    "all_records": {
        "action": "store_true",
        "help": "use every MIMIC-IV-ECG record (multi-label and unlabelled too), not only the paper's single-label "
        "ones",
    },
}


def add_mimic_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add flags shared by the MIMIC builders to `parser`, the same everywhere.

    Args:
        parser: from `cli_parser`.
        names: any of `--reports` (MIMIC-CXR reports zip or folder), `--notes` (CSV of ECG notes), `--hosp`
            (MIMIC-IV `hosp/`, for `hadm_id`), `--seed` (the shared patient split seed), `--all_records` (every
            MIMIC-IV-ECG record, not only the single-label ones), without the dashes.

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
