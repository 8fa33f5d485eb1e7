"""CPSC2018 (ICBEB 2018 challenge) -> a `DatasetDict` of 12-lead ECG record paths with the 9 rhythm/morphology classes.

Accepted layout (`--root`): the challenge's `REFERENCE.csv` at the top, and the 6,877 records as WFDB records
anywhere below it (`A0001.hea` + `A0001.mat`), which is how the PhysioNet/CinC Challenge 2020 republished them
(https://physionet.org/content/challenge-2020/, `PhysioNetChallenge2020_Training_CPSC.tar.gz`, and the same files in
Challenge 2021's `training/cpsc_2018/`): the `.mat` file holds the signal and the `.hea` header makes it a WFDB record
the ECG processor can read. The original CPSC zips (`TrainingSet1-3/`) hold MATLAB structs without headers and are
not read; their `REFERENCE.csv` is the label file this builder needs:

    REFERENCE.csv                    Recording, First_label, Second_label, Third_label  (codes 1-9, blank if none)
    <any folders>/A0001.{hea,mat}    12 leads at 500 Hz, 6-60 s (the processor keeps the first 10 s)

Rows: every recording of `REFERENCE.csv`. Labels: all of a recording's labels (476 recordings have 2 or 3), in class
order, named with CPSC's abbreviations: 1 Normal, 2 AF, 3 I-AVB, 4 LBBB, 5 RBBB, 6 PAC, 7 PVC, 8 STD, 9 STE.
CPSC2018 publishes no patient ids, so each recording is its own patient: `subject_id` is the recording number
(`A0001` -> 1) and the split (train / test, about 80 / 20 %, the paper's 5,501 / 1,376) is `medbind_processing.splits`'
seeded hash of it. There is no report text.

    python -m medbind_processing.cpsc2018 --root RAW_DIR --out OUT_DIR [--seed 0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import wfdb
from tqdm.auto import tqdm

from .building import build_dataset_dict
from .cli import cli_parser, run_cli
from .dataset_card import DataSource
from .features import ecg_features
from .splits import DEFAULT_SEED, split_by_patient
from .tables import read_table

CPSC2018_CLASSES = ("Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE")
LABEL_COLUMNS = ("First_label", "Second_label", "Third_label")
SPLIT_FRACTIONS = (0.8, 0.0, 0.2)
FEATURES = ecg_features(labels=CPSC2018_CLASSES, drop=["text"], study_id=datasets.Value("string"))
DESCRIPTION = "CPSC2018 (ICBEB 2018): 12-lead ECG record paths (500 Hz, 6-60 s) with the challenge's 9 classes."
SOURCE = DataSource(
    name="cpsc2018",
    pretty_name="CPSC2018 (ICBEB 2018) 12-lead ECGs with the challenge's 9 classes (MedBind build)",
    homepage="The CPSC2018 recordings as republished by the PhysioNet/CinC Challenge 2020, "
    "https://physionet.org/content/challenge-2020/ (record paths point into this download), with CPSC2018's "
    "REFERENCE.csv (http://2018.icbeb.org/Challenge.html).",
    license="cc-by-4.0",
    access="Open access on PhysioNet under the Creative Commons Attribution 4.0 International licence: cite the "
    "CPSC2018 paper (Liu et al., J. Med. Imaging Health Inform. 2018), the Challenge 2020 paper and PhysioNet.",
    label_rules=__doc__,
)


def reference_labels(row: Mapping[str, Any]) -> list[str]:
    """The class names of one `REFERENCE.csv` row (label columns 1-9 or blank), in `CPSC2018_CLASSES` order, each
    once: e.g. `["AF", "PVC"]` for First_label 7, Second_label 2."""
    codes = set()
    for column in LABEL_COLUMNS:
        value = row.get(column)
        if value is None or pd.isna(value):
            continue
        try:
            code = float(value)
        except ValueError:
            code = 0.0
        if not (code.is_integer() and 1 <= code <= len(CPSC2018_CLASSES)):
            raise ValueError(f"REFERENCE.csv, {row['Recording']}: {column} must be a class code 1-9, got {value!r}")
        codes.add(int(code))
    if not codes:
        raise ValueError(f"REFERENCE.csv, {row['Recording']}: no label in {list(LABEL_COLUMNS)}")
    return [CPSC2018_CLASSES[code - 1] for code in sorted(codes)]


def recording_number(recording: str) -> int:
    """The number of a CPSC recording name (`"A0001"` -> 1), used as its patient id."""
    if not (recording[:1] == "A" and recording[1:].isdigit()):
        raise ValueError(f"REFERENCE.csv: recording names look like 'A0001', got {recording!r}")
    return int(recording[1:])


def cpsc_record(row: Mapping[str, Any], headers: Mapping[str, Path]) -> dict[str, Any]:
    """One `REFERENCE.csv` row as an example of `FEATURES`, its rate read from the record's (12-lead) header."""
    recording = str(row["Recording"])
    if recording not in headers:
        raise FileNotFoundError(
            f"REFERENCE.csv, {recording}: no {recording}.hea below the root; this builder reads the WFDB copy of "
            "CPSC2018 (PhysioNet/CinC Challenge 2020), not the original MATLAB-only zips"
        )
    header = wfdb.rdheader(str(headers[recording].with_suffix("")))
    if header.n_sig != 12:
        raise ValueError(f"{headers[recording]}: expected a 12-lead record, found {header.n_sig} signals")
    return {
        "ecg_path": str(headers[recording].with_suffix("").resolve()),
        "sampling_rate": int(header.fs),
        "subject_id": recording_number(recording),
        "study_id": recording,
        "hadm_id": None,
        "ecg_time": None,
        "labels": reference_labels(row),
    }


def build_cpsc2018(root: Path, seed: int = DEFAULT_SEED, build_dir: Path | None = None) -> datasets.DatasetDict:
    """Build CPSC2018 (see the module docstring for the layout, labels and split)."""
    root = Path(root)
    reference = read_table(root, "REFERENCE.csv", ["Recording", *LABEL_COLUMNS])
    headers = {path.stem: path for path in sorted(root.rglob("*.hea"))}
    records = [cpsc_record(row, headers) for row in tqdm(reference.to_dict("records"), desc="CPSC2018", unit="record")]
    records_by_split = split_by_patient(records, seed, SPLIT_FRACTIONS)
    return build_dataset_dict(records_by_split, FEATURES, DESCRIPTION, build_dir=build_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the train/test split")
    run_cli(build_cpsc2018, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
