"""PTB-XL 1.0.3 -> a `DatasetDict` of ECG record paths, report texts and the five diagnostic superclasses.

Raw layout (https://physionet.org/content/ptb-xl/1.0.3/, `--root` is the unzipped folder):

    ptbxl_database.csv        ecg_id, patient_id, ..., recording_date, report, scp_codes, ..., strat_fold,
                              filename_lr, filename_hr
    scp_statements.csv        the 71 SCP-ECG statements (index = code) with `diagnostic` and `diagnostic_class`
    records100/00000/00001_lr.{hea,dat}   10 s at 100 Hz
    records500/00000/00001_hr.{hea,dat}   10 s at 500 Hz

Rows: every record. `ecg_path` is the 100 Hz record (the rate the paper trains at) and `ecg_path_500hz` the
500 Hz one; `text` is the `report` column as written (PTB-XL's reports are partly German, as the paper used them).
Labels: the superclasses (NORM, HYP, STTC, MI, CD) of the record's diagnostic statements, aggregated as PTB-XL's own
`example_physionet.py` does: every code in `scp_codes` that `scp_statements.csv` marks diagnostic contributes its
`diagnostic_class`, whatever its likelihood. Records with only rhythm/form statements get no label (`labels == []`).
Splits: `strat_fold` 1-8 train, 9 validation, 10 test (the PTB-XL authors' recommended folds).

    python -m medbind_processing.ptbxl --root RAW_DIR --out OUT_DIR
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm

from .building import build_dataset_dict
from .cli import cli_parser, run_cli
from .dataset_card import DataSource
from .features import ecg_features
from .labels import ECG_SUPERCLASSES
from .tables import read_table
from .times import parse_time, to_iso

FEATURES = ecg_features(
    labels=ECG_SUPERCLASSES, ecg_path_500hz=datasets.Value("string"), strat_fold=datasets.Value("int64")
)
DESCRIPTION = "PTB-XL 1.0.3: 12-lead ECG record paths (100 and 500 Hz), reports, 5 diagnostic superclasses."
SOURCE = DataSource(
    name="ptbxl",
    pretty_name="PTB-XL 12-lead ECGs with the 5 diagnostic superclasses (MedBind build)",
    homepage="PTB-XL 1.0.3, https://physionet.org/content/ptb-xl/1.0.3/ (record paths point into this download)",
    license="cc-by-4.0",
    access="Open access on PhysioNet under the Creative Commons Attribution 4.0 International licence: cite PTB-XL "
    "(Wagner et al., Scientific Data 2020) and PhysioNet.",
    label_rules=__doc__,
)
DATABASE_COLUMNS = ["ecg_id", "patient_id", "recording_date", "report", "scp_codes", "strat_fold", "filename_lr",
                    "filename_hr"]


def read_diagnostic_classes(root: Path) -> dict[str, str]:
    """`{code: diagnostic_class}` (e.g. `"IMI" -> "MI"`) of the statements of `scp_statements.csv` with
    `diagnostic == 1`; a class outside `ECG_SUPERCLASSES` raises ValueError."""
    statements = read_table(root, "scp_statements.csv", ["diagnostic", "diagnostic_class"], index_col=0)
    diagnostic = statements[statements["diagnostic"] == 1]
    unknown = sorted(set(diagnostic["diagnostic_class"]) - set(ECG_SUPERCLASSES), key=str)
    if unknown:
        raise ValueError(f"{root / 'scp_statements.csv'}: diagnostic_class {unknown} not in {ECG_SUPERCLASSES}")
    return dict(zip(diagnostic.index, diagnostic["diagnostic_class"]))


def parse_scp_codes(text: str, ecg_id: int) -> dict[str, float]:
    """Parse one `scp_codes` cell, a Python dict literal such as `"{'NORM': 100.0, 'SR': 0.0}"`, into `{code:
    likelihood}`; `ecg_id` names the record in the error message."""
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        codes = None
    if not isinstance(codes, dict):
        raise ValueError(f"ptbxl_database.csv, ecg_id {ecg_id}: scp_codes must be a dict literal, got {text!r}")
    return codes


def diagnostic_superclasses(scp_codes: Mapping[str, float], diagnostic_classes: Mapping[str, str]) -> list[str]:
    """The superclasses of a record's diagnostic statements, in `ECG_SUPERCLASSES` order, each once: e.g.
    `["STTC", "MI"]` for `{"IMI": 35.0, "NDT": 0.0, "SR": 0.0}`, `[]` when no code is diagnostic.

    Likelihoods are ignored, as in PTB-XL's example code; codes absent from `diagnostic_classes`
    (`read_diagnostic_classes`: rhythm, form) are skipped.
    """
    found = {diagnostic_classes[code] for code in scp_codes if code in diagnostic_classes}
    return [name for name in ECG_SUPERCLASSES if name in found]


def fold_split(strat_fold: int) -> str:
    """The split of a stratified fold: 1-8 `"train"`, 9 `"validation"`, 10 `"test"`."""
    if not 1 <= strat_fold <= 10:
        raise ValueError(f"strat_fold must be in 1-10, got {strat_fold}")
    return {9: "validation", 10: "test"}.get(strat_fold, "train")


def record_path(root: Path, relative: str, ecg_id: int) -> str:
    """Absolute WFDB record path (no extension) of `relative` under `root`, checking that its header exists."""
    path = (root / relative).resolve()
    if not path.with_suffix(".hea").is_file():
        raise FileNotFoundError(f"ptbxl_database.csv, ecg_id {ecg_id}: record header {path}.hea not found")
    return str(path)


def ptbxl_record(row: Mapping[str, Any], root: Path, diagnostic_classes: Mapping[str, str]) -> dict[str, Any]:
    """One row of `ptbxl_database.csv` as an example of `FEATURES` (record files checked, labels aggregated)."""
    ecg_id = int(row["ecg_id"])
    report = row["report"]
    return {
        "ecg_path": record_path(root, row["filename_lr"], ecg_id),
        "ecg_path_500hz": record_path(root, row["filename_hr"], ecg_id),
        "sampling_rate": 100,
        "text": report.strip() if isinstance(report, str) else "",
        "subject_id": int(row["patient_id"]),
        "study_id": ecg_id,
        "hadm_id": None,
        "ecg_time": to_iso(parse_time(row["recording_date"], f"ecg_id {ecg_id}: recording_date")),
        "strat_fold": int(row["strat_fold"]),
        "labels": diagnostic_superclasses(parse_scp_codes(row["scp_codes"], ecg_id), diagnostic_classes),
    }


def build_ptbxl(root: Path, build_dir: Path | None = None) -> datasets.DatasetDict:
    """Build PTB-XL (see the module docstring for the rows, labels and splits)."""
    root = Path(root)
    diagnostic_classes = read_diagnostic_classes(root)
    database = read_table(root, "ptbxl_database.csv", DATABASE_COLUMNS)
    records_by_split: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for row in tqdm(database.to_dict("records"), desc="PTB-XL records", unit="record"):
        records_by_split[fold_split(int(row["strat_fold"]))].append(ptbxl_record(row, root, diagnostic_classes))
    present = {name: records for name, records in records_by_split.items() if records}
    return build_dataset_dict(present, FEATURES, DESCRIPTION, build_dir=build_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    run_cli(build_ptbxl, cli_parser(__doc__), argv, source=SOURCE)


if __name__ == "__main__":
    main()
