"""The paper's published row counts, which every build's summary and card stand next to (`counts.count_summary`)."""

from __future__ import annotations

from .labels import CHEXPERT_COMPETITION_FINDINGS

PAPER_REFERENCE = "MEDBind (arXiv 2403.12894), Table 1 and Table A.4"
# Rows per split as the paper reports them (Table 1), by builder name; None: the paper has no such split.
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


def paper_total_rows(name: str) -> int | None:
    """The paper's rows over all splits of a builder's dataset (MIMIC-CXR: 123,711), None where it gives none."""
    rows = [count for count in PAPER_SPLIT_ROWS.get(name, {}).values() if count is not None]
    return sum(rows) if rows else None
