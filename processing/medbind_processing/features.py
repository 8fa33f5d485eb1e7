"""The column conventions: every CXR and every ECG dataset names and types a concept the same way, and a source
states only what differs (`cxr_features`, `ecg_features`); `COLUMN_DESCRIPTIONS` says what each column means."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import datasets
from datasets.features.features import FeatureType


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

    Columns: the standard ones below (meanings in `COLUMN_DESCRIPTIONS`), then the source's own, then the label.

    Args:
        label: class names of a single-label set: a `label` column (`ClassLabel`, classes in this order).
        labels: class names of a multi-label set: a `labels` column (`List(ClassLabel)`).
        drop: standard columns the source lacks (e.g. `"text"` for a label-only set).
        columns: a standard column's type where the source differs (`study_id=Value("string")` for a source
            without integer ids, kept in its place), or a column of the source's own (added after the standard ones).
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

    Columns as in `cxr_features`; `ecg` is the type of the signal itself (`Array2D((12, samples), "float32")`,
    already at 100 Hz), stored as an `ecg` column in place of `ecg_path` (the synthetic demo).
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


# What each column means, for the dataset cards (`dataset_card.render_dataset_card`); a builder's own rules are in
# its docstring.
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
    "readmission": "readmitted within 30 days (the rules below say from when)",
    "cxr_text": "report of the linked chest radiograph study; None where none",
    "ecg_text": "report of the linked ECG study; None where none",
}
