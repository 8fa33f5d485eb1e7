"""Tests of processing/medbind_processing/features.py: the shared column conventions."""

import datasets
import pytest

from medbind_processing.features import cxr_features, ecg_features
from medbind_processing.labels import ECG_SUPERCLASSES


def test_cxr_features_put_the_standard_columns_first_with_a_sources_differences():
    features = cxr_features(label=["no", "yes"], drop=["text", "hadm_id"], study_id=datasets.Value("string"),
                                   site=datasets.Value("int64"))
    assert list(features) == ["image", "image_path", "subject_id", "study_id", "study_time", "view", "site", "label"]
    assert isinstance(features["image"], datasets.Image) and features["study_id"] == datasets.Value("string")
    assert features["label"] == datasets.ClassLabel(names=["no", "yes"])
    assert cxr_features(labels=["A", "B"])["labels"] == datasets.List(datasets.ClassLabel(names=["A", "B"]))
    with pytest.raises(ValueError, match=r"cannot drop \['report'\]"):
        cxr_features(drop=["report"])


def test_ecg_features_hold_the_record_path_or_the_signal_itself():
    standard = ["ecg_path", "sampling_rate", "text", "subject_id", "study_id", "hadm_id", "ecg_time"]
    assert list(ecg_features()) == standard
    signal = datasets.Array2D((12, 1000), "float32")
    with_signal = ecg_features(ecg=signal, labels=ECG_SUPERCLASSES)
    assert list(with_signal)[0] == "ecg" and with_signal["ecg"] == signal and "ecg_path" not in with_signal
    assert with_signal["labels"].feature.names == list(ECG_SUPERCLASSES)
