"""MIMIC-IV outcomes: in-hospital mortality and 30-day readmission per admission, for multimodal prompt tuning.

Inputs (PhysioNet, credentialed):
- `--root`: MIMIC-IV (`physionet.org/files/mimiciv/3.1`): `hosp/admissions.csv.gz`, `hosp/patients.csv.gz`.
- `--note_dir` (optional): MIMIC-IV-Note's `note` folder (`physionet.org/files/mimic-iv-note/2.2/note`) with
  `discharge.csv.gz`; without it `readmission_text` is None.
- `--cxr_root` / `--reports`, `--ecg_root` / `--ecg_notes` (optional): MIMIC-CXR-JPG and MIMIC-IV-ECG, whose studies
  are attached to the admissions (`cxr_study_id`, `ecg_study_id`; None where none).

Rules (paper, Data and Multimodal prompt tuning):
- `mortality` = died in hospital, read from `discharge_location` ("DIED").
- `readmission` = the same `subject_id` has a later admission whose `admittime` falls at most 30 days (inclusive)
  after this admission's `dischtime`.
- `mortality_text` = `"{gender} patient, who is at the age of {anchor_age}, was admitted as {admission_type}.
  Location: {admission_location}."` (no discharge text: it would leak the outcome); `readmission_text` = the
  discharge summary of the admission (the latest `note_seq` where there are several).
- A CXR study or an ECG belongs to the admission of the same `subject_id` whose `admittime` is at most 24 hours away;
  the nearest one, each study to at most one admission. The studies are those the MIMIC-CXR and MIMIC-IV-ECG
  builders keep (by default the single-label ECGs only; `--all_records` for every ECG, as the ECG builder), so
  `cxr_study_id` / `ecg_study_id` are rows of those datasets; `cxr_text` / `ecg_text` are the attached study's report
  text as those datasets hold it (None where no study is attached), which the text-only prompt-tuning baseline
  appends to the visit's text.
- Patient-level split shared with every MIMIC dataset (`medbind_processing.splits`).

    python -m medbind_processing.mimic_outcomes --root RAW/mimiciv/3.1 --out OUT [--note_dir RAW/mimic-iv-note/2.2/note]
        [--cxr_root RAW/mimic-cxr-jpg/2.1.0 [--reports ZIP]] [--ecg_root RAW/mimic-iv-ecg/1.0 [--ecg_notes CSV]]
        [--all_records]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from .building import build_dataset_dict
from .cli import add_mimic_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .licenses import physionet_credentialed
from .mimic_cxr import cxr_records
from .mimic_ecg import ecg_records
from .mimic_linking import match_greedy
from .splits import DEFAULT_SEED, split_by_patient
from .tables import read_table
from .times import hours_apart, to_iso

READMISSION_WINDOW = timedelta(days=30)
STUDY_WINDOW = timedelta(hours=24)
GENDERS = {"M": "Male", "F": "Female"}
DESCRIPTION = "MIMIC-IV admissions with in-hospital mortality and 30-day readmission (processing/mimic_outcomes.py)"
FEATURES = datasets.Features(
    {
        "subject_id": datasets.Value("int64"),
        "hadm_id": datasets.Value("int64"),
        "admittime": datasets.Value("string"),
        "mortality_text": datasets.Value("string"),
        "readmission_text": datasets.Value("string"),
        "mortality": datasets.ClassLabel(names=["survived", "died"]),
        "readmission": datasets.ClassLabel(names=["not_readmitted", "readmitted"]),
        "cxr_study_id": datasets.Value("int64"),
        "ecg_study_id": datasets.Value("int64"),
        "cxr_text": datasets.Value("string"),
        "ecg_text": datasets.Value("string"),
    }
)
SOURCE = DataSource(
    name="mimic_outcomes",
    pretty_name="MIMIC-IV outcomes: in-hospital mortality and 30-day readmission (MedBind build)",
    homepage="MIMIC-IV (https://physionet.org/content/mimiciv/), MIMIC-IV-Note "
    "(https://physionet.org/content/mimic-iv-note/), MIMIC-CXR-JPG 2.1.0 and MIMIC-IV-ECG 1.0 for the attached "
    "studies.",
    label_rules=__doc__,
    **physionet_credentialed(
        "Credentialed PhysioNet data (MIMIC-IV, MIMIC-IV-Note discharge summaries, MIMIC-CXR reports)"
    ),
)


def mortality_text(gender: str, anchor_age: int, admission_type: str, admission_location: str) -> str:
    """The paper's demographics template for the mortality task (`M`/`F` written as Male/Female)."""
    return (
        f"{GENDERS.get(gender, gender)} patient, who is at the age of {anchor_age}, was admitted as "
        f"{admission_type}. Location: {admission_location}."
    )


def readmitted(admissions: pd.DataFrame, window: timedelta = READMISSION_WINDOW) -> pd.Series:
    """Whether each admission is followed by a readmission of the same patient within `window` of its discharge.

    Args:
        admissions: rows with `subject_id`, `admittime`, `dischtime` (datetimes).
        window: the readmission window after `dischtime`, inclusive.

    Returns:
        A boolean Series aligned with `admissions`.
    """
    ordered = admissions.sort_values(["subject_id", "admittime"])
    next_admit = ordered.groupby("subject_id")["admittime"].shift(-1)
    flags = next_admit.notna() & (next_admit - ordered["dischtime"] <= window)
    return flags.reindex(admissions.index)


def attach_studies(
    admissions: Sequence[Mapping[str, Any]], studies: Sequence[Mapping[str, Any]], window: timedelta = STUDY_WINDOW
) -> list[int | None]:
    """The study of each admission: same `subject_id`, `time` at most `window` from `admittime`, nearest first.

    Args:
        admissions: rows with `subject_id` and `admittime` (datetime).
        studies: rows with `subject_id`, `study_id` and `time` (datetime or None).
        window: inclusive.

    Returns:
        One `study_id` or None per admission; a study goes to one admission only.
    """
    by_subject: dict[Any, list[int]] = {}
    for index, study in enumerate(studies):
        by_subject.setdefault(study["subject_id"], []).append(index)
    limit = window.total_seconds() / 3600.0
    candidates = []
    for admission_index, admission in enumerate(admissions):
        for study_index in by_subject.get(admission["subject_id"], ()):
            if studies[study_index]["time"] is None:
                continue
            hours = hours_apart(admission["admittime"], studies[study_index]["time"])
            if hours <= limit:
                candidates.append((hours, admission_index, study_index))
    attached: list[int | None] = [None] * len(admissions)
    for admission_index, study_index in match_greedy(candidates):
        attached[admission_index] = studies[study_index]["study_id"]
    return attached


def _discharge_summaries(note_dir: Path) -> dict[int, str]:
    notes = read_table(note_dir, "discharge.csv", ["hadm_id", "note_seq", "text"])
    latest = notes.dropna(subset=["hadm_id"]).sort_values("note_seq").drop_duplicates("hadm_id", keep="last")
    return dict(zip(latest["hadm_id"].astype(int), latest["text"]))


def outcome_records(
    root: Path,
    note_dir: Path | None = None,
    cxr_studies: Sequence[Mapping[str, Any]] = (),
    ecg_studies: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The rows of the outcomes dataset (keys = `FEATURES`), one per admission, sorted by `hadm_id`.

    Args:
        root: the MIMIC-IV folder (with `hosp/`).
        note_dir: MIMIC-IV-Note's `note` folder (None: `readmission_text` is None).
        cxr_studies, ecg_studies: studies with `subject_id`, `study_id`, `time` to attach (`attach_studies`) and
            `text`, the report stored as `cxr_text` / `ecg_text` of the admission it attaches to.

    Raises:
        FileNotFoundError, ValueError: missing tables or columns, or an admission whose patient is not in
            `patients.csv`.
    """
    hosp = Path(root) / "hosp"
    admissions = read_table(
        hosp,
        "admissions.csv",
        ["subject_id", "hadm_id", "admittime", "dischtime", "admission_type", "admission_location",
         "discharge_location"],
        parse_dates=["admittime", "dischtime"],
    )
    patients = read_table(hosp, "patients.csv", ["subject_id", "gender", "anchor_age"]).set_index("subject_id")
    unknown = sorted(set(admissions["subject_id"]) - set(patients.index))
    if unknown:
        raise ValueError(f"{hosp}: admissions of subject_id(s) {unknown[:5]} missing from patients.csv")
    admissions = admissions.sort_values("hadm_id").reset_index(drop=True)
    admissions["readmission"] = readmitted(admissions).astype(int)
    summaries = _discharge_summaries(Path(note_dir)) if note_dir is not None else {}
    rows = [
        {"subject_id": int(a.subject_id), "admittime": a.admittime.to_pydatetime()}
        for a in admissions.itertuples(index=False)
    ]
    cxr_ids, ecg_ids = attach_studies(rows, cxr_studies), attach_studies(rows, ecg_studies)
    cxr_texts = {study["study_id"]: study["text"] for study in cxr_studies}
    ecg_texts = {study["study_id"]: study["text"] for study in ecg_studies}
    records = []
    for index, admission in enumerate(admissions.itertuples(index=False)):
        patient = patients.loc[admission.subject_id]
        records.append(
            {
                "subject_id": int(admission.subject_id),
                "hadm_id": int(admission.hadm_id),
                "admittime": to_iso(admission.admittime.to_pydatetime()),
                "mortality_text": mortality_text(
                    patient["gender"], int(patient["anchor_age"]), admission.admission_type,
                    admission.admission_location,
                ),
                "readmission_text": summaries.get(int(admission.hadm_id)),
                "mortality": int(str(admission.discharge_location).strip().upper() == "DIED"),
                "readmission": int(admission.readmission),
                "cxr_study_id": cxr_ids[index],
                "ecg_study_id": ecg_ids[index],
                "cxr_text": cxr_texts.get(cxr_ids[index]),
                "ecg_text": ecg_texts.get(ecg_ids[index]),
            }
        )
    return records


def build_mimic_outcomes(
    root: Path,
    note_dir: Path | None = None,
    cxr_root: Path | None = None,
    reports: Path | None = None,
    ecg_root: Path | None = None,
    ecg_notes: Path | None = None,
    seed: int = DEFAULT_SEED,
    all_records: bool = False,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build the outcomes `DatasetDict` (columns `FEATURES`, patient-level train / validation / test).

    Args:
        root, note_dir: as `outcome_records`.
        cxr_root, reports: MIMIC-CXR-JPG and its reports (`mimic_cxr.cxr_records`); None: no CXR attached.
        ecg_root, ecg_notes: MIMIC-IV-ECG and its notes (`mimic_ecg.ecg_records`); None: no ECG attached.
        seed: the shared MIMIC split seed.
        all_records: attach any MIMIC-IV-ECG record; False: only the single-label ones the ECG builder keeps by
            default (`mimic_ecg.ecg_records`).
        build_dir: a folder where the Arrow files stay until the caller saves the build and removes it (the command
            line's); None: in memory (`building.build_dataset_dict`).

    Raises:
        FileNotFoundError, ValueError: as the readers.
    """
    cxr = [{**r, "time": r["study_time"]} for r in cxr_records(cxr_root, reports)] if cxr_root else []
    ecg = (
        [{**r, "time": r["ecg_time"]} for r in ecg_records(ecg_root, ecg_notes, all_records=all_records)]
        if ecg_root
        else []
    )
    records = outcome_records(root, note_dir, cxr, ecg)
    return build_dataset_dict(split_by_patient(records, seed), FEATURES, DESCRIPTION, build_dir=build_dir)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    parser.add_argument("--note_dir", type=Path, default=None, help="MIMIC-IV-Note note/ folder (discharge.csv.gz)")
    parser.add_argument("--cxr_root", type=Path, default=None, help="MIMIC-CXR-JPG folder")
    parser.add_argument("--ecg_root", type=Path, default=None, help="MIMIC-IV-ECG folder")
    parser.add_argument("--ecg_notes", type=Path, default=None, help="CSV of ECG notes (note_id, text)")
    add_mimic_flags(parser, "reports", "seed", "all_records")
    run_cli(build_mimic_outcomes, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
