"""MIMIC-IV outcomes: in-hospital mortality and 30-day readmission per admission, for multimodal prompt tuning.

Inputs (PhysioNet, credentialed):
- `--root`: MIMIC-IV (`physionet.org/files/mimiciv/3.1`): `hosp/admissions.csv.gz`, `hosp/patients.csv.gz`.
- `--note_dir`: MIMIC-IV-Note's `note` folder (`physionet.org/files/mimic-iv-note/2.2/note`) with
  `discharge.csv.gz`; needed for the paper's cohort (without it, `--admissions all` and `readmission_text` None).
- `--cxr_root` / `--reports`, `--ecg_root` / `--ecg_notes` (optional): MIMIC-CXR-JPG and MIMIC-IV-ECG, whose studies
  are attached to the admissions (`cxr_study_id`, `ecg_study_id`; None where none).

Rules (paper, Data and Multimodal prompt tuning):
- Rows (`--admissions`): `with_discharge_summary` (default) keeps the admissions that have a discharge summary in
  MIMIC-IV-Note (331,794 summaries in version 2.2), the paper's cohort: its 218,787 + 40,995 + 72,473 = 332,255 rows
  match no other count (MIMIC-IV has 431,231 admissions in 2.2, 546,028 in 3.1), and readmission's text is that
  summary. `all` keeps every admission of `admissions.csv`.
- `mortality` = died in hospital, read from `discharge_location` ("DIED").
- `readmission` = the same `subject_id` has a later admission whose `admittime` falls at most 30 days (inclusive)
  after this admission's `admittime` (`--readmission_from admittime`, default: the paper's wording, "another
  admission (admittime) within 30 days") or after its `dischtime` (`--readmission_from dischtime`: the usual clinical
  definition). Every admission of the patient counts as the later one, in the cohort or not. The build options in
  `summary.json` and the card say which was used.
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
        [--all_records] [--report_sections either|both] [--admissions with_discharge_summary|all]
        [--readmission_from admittime|dischtime]
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
from .mimic_linking import match_greedy, same_subject
from .splits import DEFAULT_SEED, split_by_patient
from .tables import read_table
from .times import hours_apart, to_iso

READMISSION_WINDOW = timedelta(days=30)
# Where the readmission window starts (`--readmission_from`; the module docstring says why both).
READMISSION_FROM = ("admittime", "dischtime")
# Which admissions are rows (`--admissions`).
COHORTS = ("with_discharge_summary", "all")
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


def readmitted(
    admissions: pd.DataFrame, measured_from: str = "admittime", window: timedelta = READMISSION_WINDOW
) -> pd.Series:
    """Whether each admission (`subject_id`, `admittime`, `dischtime` as datetimes) is followed by another of the
    same patient within `window` (inclusive): a boolean Series aligned with `admissions`.

    `measured_from` (`READMISSION_FROM`) is where the window starts: this admission's `admittime` or `dischtime`.
    """
    if measured_from not in READMISSION_FROM:
        raise ValueError(f"readmission_from: expected one of {READMISSION_FROM}, got {measured_from!r}")
    ordered = admissions.sort_values(["subject_id", "admittime"])
    next_admit = ordered.groupby("subject_id")["admittime"].shift(-1)
    flags = next_admit.notna() & (next_admit - ordered[measured_from] <= window)
    return flags.reindex(admissions.index)


def attach_studies(
    admissions: Sequence[Mapping[str, Any]], studies: Sequence[Mapping[str, Any]], window: timedelta = STUDY_WINDOW
) -> list[int | None]:
    """The `study_id` (or None) of each admission: same `subject_id`, `time` (datetime or None) at most `window`
    (inclusive) from `admittime`, nearest first; a study goes to one admission only."""
    limit = window.total_seconds() / 3600.0
    candidates = []
    for admission_index, study_index in same_subject(admissions, studies):
        if studies[study_index]["time"] is None:
            continue
        hours = hours_apart(admissions[admission_index]["admittime"], studies[study_index]["time"])
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
    admissions: str = "with_discharge_summary",
    readmission_from: str = "admittime",
) -> list[dict[str, Any]]:
    """The rows of the outcomes dataset (keys = `FEATURES`), one per admission of the cohort, sorted by `hadm_id`.

    Args:
        root: the MIMIC-IV folder (with `hosp/`).
        note_dir: MIMIC-IV-Note's `note` folder (None: `readmission_text` is None; only with `admissions="all"`).
        cxr_studies, ecg_studies: studies with `subject_id`, `study_id`, `time` to attach (`attach_studies`) and
            `text`, the report stored as `cxr_text` / `ecg_text` of the admission it attaches to.
        admissions: the cohort (`COHORTS`).
        readmission_from: where the 30-day window starts (`readmitted`).
    """
    if admissions not in COHORTS:
        raise ValueError(f"admissions: expected one of {COHORTS}, got {admissions!r}")
    if admissions == "with_discharge_summary" and note_dir is None:
        raise ValueError(
            "admissions='with_discharge_summary' (the paper's cohort) needs MIMIC-IV-Note's discharge summaries: "
            "pass --note_dir RAW/mimic-iv-note/2.2/note, or --admissions all to keep every admission"
        )
    hosp = Path(root) / "hosp"
    table = read_table(
        hosp,
        "admissions.csv",
        ["subject_id", "hadm_id", "admittime", "dischtime", "admission_type", "admission_location",
         "discharge_location"],
        parse_dates=["admittime", "dischtime"],
    )
    patients = read_table(hosp, "patients.csv", ["subject_id", "gender", "anchor_age"]).set_index("subject_id")
    unknown = sorted(set(table["subject_id"]) - set(patients.index))
    if unknown:
        raise ValueError(f"{hosp}: admissions of subject_id(s) {unknown[:5]} missing from patients.csv")
    table = table.sort_values("hadm_id").reset_index(drop=True)
    # Over every admission: a readmission is any later admission, whether or not it has a discharge summary.
    table["readmission"] = readmitted(table, readmission_from).astype(int)
    summaries = _discharge_summaries(Path(note_dir)) if note_dir is not None else {}
    if admissions == "with_discharge_summary":
        table = table[table["hadm_id"].astype(int).isin(summaries)].reset_index(drop=True)
    rows = [
        {"subject_id": int(a.subject_id), "admittime": a.admittime.to_pydatetime()}
        for a in table.itertuples(index=False)
    ]
    cxr_ids, ecg_ids = attach_studies(rows, cxr_studies), attach_studies(rows, ecg_studies)
    cxr_texts = {study["study_id"]: study["text"] for study in cxr_studies}
    ecg_texts = {study["study_id"]: study["text"] for study in ecg_studies}
    records = []
    for index, admission in enumerate(table.itertuples(index=False)):
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
    report_sections: str = "either",
    admissions: str = "with_discharge_summary",
    readmission_from: str = "admittime",
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build the outcomes `DatasetDict` (`outcome_records`, the shared MIMIC patient-level split), attaching the
    studies `mimic_cxr.cxr_records` and `mimic_ecg.ecg_records` keep with the same arguments (none without
    `cxr_root` / `ecg_root`)."""
    cxr = cxr_records(cxr_root, reports, None, report_sections) if cxr_root else []
    ecg = ecg_records(ecg_root, ecg_notes, all_records=all_records) if ecg_root else []
    cxr, ecg = [{**r, "time": r["study_time"]} for r in cxr], [{**r, "time": r["ecg_time"]} for r in ecg]
    records = outcome_records(root, note_dir, cxr, ecg, admissions, readmission_from)
    return build_dataset_dict(split_by_patient(records, seed), FEATURES, DESCRIPTION, build_dir=build_dir)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    parser.add_argument("--note_dir", type=Path, default=None, help="MIMIC-IV-Note note/ folder (discharge.csv.gz)")
    parser.add_argument("--cxr_root", type=Path, default=None, help="MIMIC-CXR-JPG folder")
    parser.add_argument("--ecg_root", type=Path, default=None, help="MIMIC-IV-ECG folder")
    parser.add_argument("--ecg_notes", type=Path, default=None, help="CSV of ECG notes (note_id, text)")
    parser.add_argument(
        "--admissions", choices=COHORTS, default="with_discharge_summary",
        help="rows: the admissions with a discharge summary (the paper's cohort; needs --note_dir), or all",
    )
    parser.add_argument(
        "--readmission_from", choices=READMISSION_FROM, default="admittime",
        help="readmitted when the next admission starts at most 30 days after this one's admittime (the paper's "
        "wording) or dischtime",
    )
    add_mimic_flags(parser, "reports", "seed", "all_records", "report_sections")
    run_cli(build_mimic_outcomes, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
