"""MIMIC-IV-ECG -> `DatasetDict` of 12-lead record paths, report texts and the paper's rule-based 5-class labels.

Inputs (PhysioNet, credentialed):
- `--root`: MIMIC-IV-ECG (`physionet.org/files/mimic-iv-ecg/1.0`): `record_list.csv`, `machine_measurements.csv`,
  `waveform_note_links.csv` and the WFDB records `files/pXXXX/pSUBJECT/sSTUDY/STUDY.{hea,dat}` (10 s, 500 Hz).
- `--notes` (optional): a CSV with `note_id` and `text` columns holding the cardiologists' ECG notes (to be released
  in MIMIC-IV-Note); a record whose `waveform_note_links` entry points to one of them takes the note as its text.
- `--hosp` (optional): MIMIC-IV's `hosp` folder; its admissions table gives each ECG its `hadm_id`.

Rules (paper, Data): the text is the linked cardiologist note where there is one, else the machine statements
`report_0..report_17` rendered with the paper's template (`render_ecg_report`); `labels` come from
`ecg_labels_from_text` (exclusion phrases, then keywords per class; several classes where several match; `[]` when
excluded or unmatched); `ecg_path` is the absolute record path without extension and `sampling_rate` its rate (the
processor low-pass filters and resamples to 100 Hz at train time); patient-level split shared with every MIMIC
dataset (`medbind_processing.splits`).

Rows: by default only the records whose text gives exactly one class, the set the paper trains and evaluates on
(Table A.4: 34,097 NORM, 11,305 HYP, 28,918 STTC, 19,242 MI, 31,438 CD = 125,000 = 88,291 / 12,065 / 24,644). With
`--all_records` every record of `record_list.csv` (the ~800k, multi-label and unlabelled ones too). The columns are
the same in both modes: `labels` is a list, holding exactly one class in every row of the default build.
MIMIC-PAIR and the outcomes builder attach only the ECGs this rule keeps (same flag), so their study ids are
always rows of the ECG dataset built with the same flags.

    python -m medbind_processing.mimic_ecg --root RAW/mimic-iv-ecg/1.0 --out OUT [--notes NOTES.csv]
        [--hosp RAW/mimiciv/3.1/hosp] [--all_records]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from tqdm.auto import tqdm

from .building import build_dataset_dict
from .cli import add_mimic_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .features import ecg_features
from .labels import ECG_SUPERCLASSES
from .licenses import physionet_credentialed
from .mimic_linking import link_admissions, read_admissions
from .splits import DEFAULT_SEED, split_by_patient
from .tables import read_table
from .times import parse_time

MIMIC_ECG_SAMPLING_RATE = 500  # every MIMIC-IV-ECG record: 10 s at 500 Hz
REPORT_COLUMNS = tuple(f"report_{index}" for index in range(18))
DESCRIPTION = (
    "MIMIC-IV-ECG 12-lead records (paths), template-rendered reports, rule-based labels (processing/mimic_ecg.py)"
)
FEATURES = ecg_features(labels=ECG_SUPERCLASSES)
SOURCE = DataSource(
    name="mimic_ecg",
    pretty_name="MIMIC-IV-ECG (MedBind build)",
    homepage="MIMIC-IV-ECG 1.0, https://physionet.org/content/mimic-iv-ecg/1.0/ (record paths point into this "
    "download); admissions from MIMIC-IV, https://physionet.org/content/mimiciv/; cardiologist notes, where given, "
    "from MIMIC-IV-Note.",
    label_rules=__doc__,
    **physionet_credentialed(
        "The waveforms and machine reports of MIMIC-IV-ECG are open access (ODbL 1.0), but a build that links "
        "admissions (`--hosp`, MIMIC-IV) or cardiologist notes (`--notes`, MIMIC-IV-Note) holds credentialed data"
    ),
)

# The paper's Data section: a record whose text holds any of these is left unlabelled.
EXCLUSION_PHRASES = (
    "borderline ecg", "poor quality", "without knowing patient", "error", "pediatric", "warning: data quality",
    "missing lead", "unsuitable for analysis", "motion artifacts", "requires manual review", "technical difficulties",
    "possibly", "probable",
)
# The paper's Data section: keywords per class, as the paper lists them (PVC is in both STTC and CD).
CLASS_KEYWORDS = {
    "NORM": ("normal ecg", "no issues found", "normal ekg", "normal heart tracing", "within normal limits"),
    "HYP": ("hypertrophy", "left atrial enlargement", "LVH", "LAO", "overload", "enlargement"),
    "STTC": (
        "ST elevation", "T wave changes", "nonspecific T abnormalities", "ST changes", "T changes",
        "ventricular premature complex", "VPC", "PVC", "ST change",
    ),
    "MI": ("myocardial ischemia", "inferior infarct", "anterior infarct", "septal infarct"),
    "CD": (
        "degree A-V block", "PAC", "prolonged PR interval", "conduction delay", "left axis deviation",
        "bundle branch block", "pacemaker", "atrial pacing", "rBB", "LAFB", "PVC",
    ),
}


def render_ecg_report(statements: Iterable[str | None]) -> str:
    """Render ECG statements with the paper's template (paper, Data).

    `"ECG presents {report_0}. Additional findings include the following: {report_1}, ..., {report_17}."`; blanks and
    None are skipped and each statement's own trailing period is dropped so the template's punctuation is the only
    one; `"ECG presents X."` alone for a single statement, `""` for none.
    """
    cleaned = [s.strip().rstrip(".").strip() for s in statements if isinstance(s, str) and s.strip().rstrip(".")]
    if not cleaned:
        return ""
    text = f"ECG presents {cleaned[0]}."
    if len(cleaned) > 1:
        text += f" Additional findings include the following: {', '.join(cleaned[1:])}."
    return text


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern:
    # Case-insensitive, anchored at the start of a word only: "normal ecg" must not fire inside "Abnormal ECG"
    # (the commonest MIMIC statement), while "rBB" must still fire on "RBBB" and "PVC" on "PVC(s)".
    return re.compile("|".join(rf"(?<![a-z0-9]){re.escape(p)}" for p in phrases), re.IGNORECASE)


_EXCLUSION_PATTERN = _phrase_pattern(EXCLUSION_PHRASES)
_CLASS_PATTERNS = {name: _phrase_pattern(CLASS_KEYWORDS[name]) for name in ECG_SUPERCLASSES}


def ecg_labels_from_text(text: str) -> list[str]:
    """The paper's rule-based MIMIC-IV-ECG labels of one report text (paper, Data).

    Matching is case-insensitive and a phrase must start at a word boundary (it may run into a longer word:
    `rBB` matches `RBBB`, `error` matches `errors`, but `normal ecg` does not match `Abnormal ECG` and
    `septal infarct` does not match `Anteroseptal infarct`). Returns the matching classes in `ECG_SUPERCLASSES`
    order (several where several match: multi-label), or `[]` when the text holds an exclusion phrase or no keyword.
    """
    if _EXCLUSION_PATTERN.search(text):
        return []
    return [name for name in ECG_SUPERCLASSES if _CLASS_PATTERNS[name].search(text)]


def _linked_notes(root: Path, notes: Path) -> dict[int, str]:
    """`{study_id: note text}` for the records `waveform_note_links.csv` links to a note present in `notes`."""
    if not Path(notes).is_file():
        raise FileNotFoundError(f"ECG notes file not found: {notes}")
    links = read_table(root, "waveform_note_links.csv", ["study_id", "note_id"])
    note_table = pd.read_csv(notes)
    if not {"note_id", "text"} <= set(note_table.columns):
        raise ValueError(f"{notes}: expected columns note_id and text, found {list(note_table.columns)}")
    text_by_note = dict(zip(note_table["note_id"], note_table["text"]))
    return {
        int(study): text_by_note[note]
        for study, note in zip(links["study_id"], links["note_id"])
        if isinstance(text_by_note.get(note), str) and text_by_note[note].strip()
    }


def ecg_records(
    root: Path, notes: Path | None = None, hosp: Path | None = None, all_records: bool = False
) -> list[dict[str, Any]]:
    """The rows of the MIMIC-IV-ECG dataset (keys = `FEATURES`, `ecg_time` still a datetime), one per kept study of
    `record_list.csv`, sorted by `study_id`.

    Args:
        notes: optional CSV of cardiologist notes (`note_id`, `text`), linked by `waveform_note_links.csv`.
        hosp: MIMIC-IV's `hosp` folder for `hadm_id` (None: every `hadm_id` is None).
        all_records: keep every study; False (the paper's set): only those whose text gives exactly one class.
    """
    root = Path(root)
    record_list = read_table(root, "record_list.csv", ["subject_id", "study_id", "ecg_time", "path"])
    measurements = read_table(root, "machine_measurements.csv", ["study_id", *REPORT_COLUMNS], dtype=str)
    statements = {
        int(row[0]): render_ecg_report(row[1:])
        for row in measurements[["study_id", *REPORT_COLUMNS]].itertuples(index=False)
    }
    note_texts = _linked_notes(root, notes) if notes is not None else {}
    record_list = record_list.sort_values("study_id")
    times = [parse_time(value, "ecg_time") for value in record_list["ecg_time"]]
    hadm_ids = link_admissions(list(record_list["subject_id"]), times, read_admissions(hosp))
    records = []
    rows = zip(record_list.itertuples(index=False), times, hadm_ids)
    for row, time, hadm_id in tqdm(rows, total=len(record_list), desc="MIMIC-IV-ECG records"):
        text = note_texts.get(int(row.study_id)) or statements.get(int(row.study_id), "")
        labels = ecg_labels_from_text(text)
        if not all_records and len(labels) != 1:
            continue
        record_path = root / row.path
        if not record_path.with_suffix(".hea").is_file():
            raise FileNotFoundError(f"WFDB header of study {row.study_id} not found: {record_path}.hea")
        records.append(
            {
                "ecg_path": str(record_path.resolve()),
                "sampling_rate": MIMIC_ECG_SAMPLING_RATE,
                "text": text,
                "subject_id": int(row.subject_id),
                "study_id": int(row.study_id),
                "hadm_id": hadm_id,
                "ecg_time": time,
                "labels": labels,
            }
        )
    return records


def build_mimic_ecg(
    root: Path,
    notes: Path | None = None,
    hosp: Path | None = None,
    seed: int = DEFAULT_SEED,
    all_records: bool = False,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build the MIMIC-IV-ECG `DatasetDict` (`ecg_records`, the shared MIMIC patient-level split)."""
    records = [
        {**record, "ecg_time": record["ecg_time"].isoformat()}
        for record in ecg_records(root, notes, hosp, all_records)
    ]
    return build_dataset_dict(split_by_patient(records, seed), FEATURES, DESCRIPTION, build_dir=build_dir)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    add_mimic_flags(parser, "notes", "hosp", "seed", "all_records")
    run_cli(build_mimic_ecg, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
