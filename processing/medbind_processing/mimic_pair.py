"""MIMIC-PAIR: links between a MIMIC-CXR study and a MIMIC-IV-ECG record of the same patient visit.

Rule (paper, Data): a CXR study and an ECG are a pair when both have a `hadm_id` and it is the same (however far
apart in time: the visit id wins); when either lacks a `hadm_id`, when they belong to the same `subject_id` and were
recorded at most 24 hours apart (inclusive). Pairs are one-to-one: candidates are taken best-first (visit links
before time links, then the smallest time difference) and a study already paired is skipped, so no ECG or CXR is
the positive of two rows in a contrastive batch. Only studies that the MIMIC-CXR and MIMIC-IV-ECG builders keep are
paired (same inputs, same rules: by default the single-label ECGs only, `--all_records` for every ECG, as the ECG
builder; `--report_sections` as the MIMIC-CXR builder), so every pair's studies are rows of those datasets, and the
patient-level split is the one every MIMIC dataset shares.

Columns: `subject_id`, `hadm_id` (the shared visit; None for time links), `cxr_study_id`, `ecg_study_id`,
`link` (`"hadm_id"` or `"time"`), `hours_apart` (float).

    python -m medbind_processing.mimic_pair --cxr_root RAW/mimic-cxr-jpg/2.1.0 --ecg_root RAW/mimic-iv-ecg/1.0 \\
        --hosp RAW/mimiciv/3.1/hosp --out OUT [--reports ZIP] [--notes NOTES.csv] [--all_records]
        [--report_sections either|both]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import datasets

from .building import build_dataset_dict
from .cli import add_mimic_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .licenses import physionet_credentialed
from .mimic_cxr import cxr_records
from .mimic_ecg import ecg_records
from .mimic_linking import match_greedy, same_subject
from .splits import DEFAULT_SEED, split_by_patient
from .times import hours_apart

PAIR_WINDOW = timedelta(hours=24)
DESCRIPTION = "MIMIC-PAIR: MIMIC-CXR study <-> MIMIC-IV-ECG record of one visit (processing/mimic_pair.py)"
FEATURES = datasets.Features(
    {
        "subject_id": datasets.Value("int64"),
        "hadm_id": datasets.Value("int64"),
        "cxr_study_id": datasets.Value("int64"),
        "ecg_study_id": datasets.Value("int64"),
        "link": datasets.Value("string"),
        "hours_apart": datasets.Value("float64"),
    }
)
SOURCE = DataSource(
    name="mimic_pair",
    pretty_name="MIMIC-PAIR: MIMIC-CXR studies linked to MIMIC-IV-ECG records (MedBind build)",
    homepage="Links between MIMIC-CXR-JPG 2.1.0 (https://physionet.org/content/mimic-cxr-jpg/2.1.0/), MIMIC-IV-ECG 1.0 "
    "(https://physionet.org/content/mimic-iv-ecg/1.0/) and MIMIC-IV admissions (https://physionet.org/content/mimiciv/).",
    label_rules=__doc__,
    **physionet_credentialed("Derived from credentialed PhysioNet data (MIMIC-CXR, MIMIC-IV)"),
)


def pair_records(
    cxr: Sequence[Mapping[str, Any]], ecg: Sequence[Mapping[str, Any]], window: timedelta = PAIR_WINDOW
) -> list[dict[str, Any]]:
    """Link CXR studies and ECGs by the MIMIC-PAIR rule (module docstring): pair rows (keys = `FEATURES`) in the
    order of `cxr`.

    Args:
        cxr, ecg: studies, each with `subject_id`, `study_id`, `hadm_id` (or None) and `time` (datetime or None).
        window: the largest time difference of a link without a shared visit id, inclusive.
    """
    limit = window.total_seconds() / 3600.0
    candidates, links = [], {}
    for cxr_index, ecg_index in same_subject(cxr, ecg):
        image_study, ecg_study = cxr[cxr_index], ecg[ecg_index]
        timed = image_study["time"] is not None and ecg_study["time"] is not None
        hours = hours_apart(image_study["time"], ecg_study["time"]) if timed else math.nan
        if image_study["hadm_id"] is not None and ecg_study["hadm_id"] is not None:
            if image_study["hadm_id"] != ecg_study["hadm_id"]:
                continue
            link = "hadm_id"
        elif timed and hours <= limit:
            link = "time"
        else:
            continue
        # Visit links first, then the closest in time (NaN hours sort last).
        candidates.append(((link != "hadm_id", math.isnan(hours), hours), cxr_index, ecg_index))
        links[cxr_index, ecg_index] = (link, hours)
    rows = []
    for cxr_index, ecg_index in match_greedy(candidates):
        link, hours = links[cxr_index, ecg_index]
        rows.append(
            {
                "subject_id": cxr[cxr_index]["subject_id"],
                "hadm_id": cxr[cxr_index]["hadm_id"] if link == "hadm_id" else None,
                "cxr_study_id": cxr[cxr_index]["study_id"],
                "ecg_study_id": ecg[ecg_index]["study_id"],
                "link": link,
                "hours_apart": hours,
            }
        )
    return rows


def build_mimic_pair(
    cxr_root: Path,
    ecg_root: Path,
    hosp: Path | None = None,
    reports: Path | None = None,
    notes: Path | None = None,
    seed: int = DEFAULT_SEED,
    all_records: bool = False,
    report_sections: str = "either",
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build MIMIC-PAIR (`pair_records`, the shared MIMIC patient-level split) from the studies
    `mimic_cxr.cxr_records` and `mimic_ecg.ecg_records` keep with the same arguments; without `hosp` every study
    lacks a `hadm_id` and only time links are made."""
    cxr = [{**r, "time": r["study_time"]} for r in cxr_records(cxr_root, reports, hosp, report_sections)]
    ecg = [{**r, "time": r["ecg_time"]} for r in ecg_records(ecg_root, notes, hosp, all_records)]
    records_by_split = split_by_patient(pair_records(cxr, ecg), seed)
    return build_dataset_dict(records_by_split, FEATURES, DESCRIPTION, build_dir=build_dir)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__, roots=("cxr_root", "ecg_root"))
    add_mimic_flags(parser, "hosp", "reports", "notes", "seed", "all_records", "report_sections")
    run_cli(build_mimic_pair, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
