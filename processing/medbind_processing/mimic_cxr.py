"""MIMIC-CXR-JPG -> `DatasetDict` of frontal chest radiographs with their cleaned reports and CheXpert labels.

Inputs (PhysioNet, credentialed):
- `--root`: MIMIC-CXR-JPG (`physionet.org/files/mimic-cxr-jpg/2.1.0`): `mimic-cxr-2.0.0-metadata.csv.gz`,
  `mimic-cxr-2.0.0-chexpert.csv.gz` and `files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`.
- `--reports`: the reports of MIMIC-CXR (`physionet.org/files/mimic-cxr/2.1.0/mimic-cxr-reports.zip`, or the folder it
  unzips to, holding `files/pXX/pSUBJECT/sSTUDY.txt`); default `ROOT/mimic-cxr-reports.zip`.
- `--hosp` (optional): MIMIC-IV's `hosp` folder; its admissions table gives each study its `hadm_id`.

Rules (paper, Data): only AP and PA views; one row per study (its first PA image, else its first AP image, by
`dicom_id`), so that a study is one retrieval target and one MIMIC-PAIR partner; the report reduced to its findings
and impression sections with the de-identification markers removed, as MedCLIP does; `labels` = the CheXpert
observations marked 1.0 (uncertain -1.0 and blank count as absent); patient-level split shared with every MIMIC
dataset (`medbind_processing.splits`). Images: shrunk at build time to 512 pixels on the shorter side and stored in
the dataset as PNG (`--shortest_edge`, `radiographs.stored_radiograph`; 0 stores the JPG's path instead);
`image_path` is the original JPG.

Which studies (`--report_sections`): the paper keeps 123,711 studies (Table 1: 86,853 / 12,059 / 24,799) without
saying how. MIMIC-CXR-JPG has 227,835 studies (377,110 images, 65,379 patients), nearly all with a frontal image.
`either` (default) keeps every frontal study whose report has a findings or an impression section (roughly 95% of
them: ~215k). `both` keeps only those with both sections (a `FINDINGS AND IMPRESSION:` section counts as both): with
a findings section in roughly 60% of reports and an impression in roughly 82%, that is some 105-130k studies, the
only rule of the published structure that lands near the paper's count (one study per patient gives 65k, PA views
only ~90k, the label or split files ~228k). `summary.json` shows the build's count next to the paper's.

    python -m medbind_processing.mimic_cxr --root RAW/mimic-cxr-jpg/2.1.0 --out OUT [--reports ZIP]
        [--hosp RAW/mimiciv/3.1/hosp] [--report_sections either|both] [--shortest_edge 512] [--num_proc N]
"""

from __future__ import annotations

import functools
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from tqdm.auto import tqdm

from .building import build_dataset_dict
from .cli import REPORT_SECTION_RULES, add_image_flags, add_mimic_flags, cli_parser, run_cli
from .dataset_card import DataSource
from .features import cxr_features
from .labels import CHEXPERT_LABELS
from .licenses import physionet_credentialed
from .mimic_linking import link_admissions, read_admissions
from .radiographs import DEFAULT_SHORTEST_EDGE, radiograph_example
from .splits import DEFAULT_SEED, split_by_patient
from .tables import read_table

FRONTAL_VIEWS = ("PA", "AP")  # preference order when a study has both
DESCRIPTION = (
    "MIMIC-CXR-JPG frontal (AP/PA) radiographs, MedCLIP-cleaned reports, CheXpert labels (processing/mimic_cxr.py)"
)
FEATURES = cxr_features(labels=CHEXPERT_LABELS)
SOURCE = DataSource(
    name="mimic_cxr",
    pretty_name="MIMIC-CXR-JPG frontal radiographs with reports (MedBind build)",
    homepage="MIMIC-CXR-JPG 2.1.0, https://physionet.org/content/mimic-cxr-jpg/2.1.0/; reports from MIMIC-CXR 2.1.0, "
    "https://physionet.org/content/mimic-cxr/2.1.0/; admissions, where given, from MIMIC-IV.",
    label_rules=__doc__,
    **physionet_credentialed("Credentialed PhysioNet data", not_even=", not even of the shrunk images"),
)

_SECTION_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z ()/&,-]*[A-Z)]):", re.MULTILINE)
_DEID_MARKER = re.compile(r"_{2,}")
_FINDINGS, _IMPRESSION, _FINDINGS_AND_IMPRESSION = "FINDINGS", "IMPRESSION", "FINDINGS AND IMPRESSION"


def clean_report(report: str, report_sections: str = "either") -> str:
    """Reduce a MIMIC-CXR report (upper-case section headers such as `FINDINGS:` at the start of a line) to its
    findings then its impression, as MedCLIP does (a `FINDINGS AND IMPRESSION:` section counts as both),
    de-identification markers (`___`) removed and whitespace collapsed; `""` when the report lacks the sections
    `report_sections` asks for (`"either"` or `"both"`; a section that is empty once cleaned counts as absent)."""
    if report_sections not in REPORT_SECTION_RULES:
        raise ValueError(f"report_sections: expected one of {REPORT_SECTION_RULES}, got {report_sections!r}")
    headers = list(_SECTION_HEADER.finditer(report))
    kept = []
    for index, header in enumerate(headers):
        if header.group(1) in (_FINDINGS, _IMPRESSION, _FINDINGS_AND_IMPRESSION):
            end = headers[index + 1].start() if index + 1 < len(headers) else len(report)
            kept.append((header.group(1), _cleaned(report[header.end() : end])))
    found = {name for name, text in kept if text}
    if report_sections == "both" and _FINDINGS_AND_IMPRESSION not in found and {_FINDINGS, _IMPRESSION} - found:
        return ""
    return " ".join(text for _, text in kept if text)


def _cleaned(text: str) -> str:
    return " ".join(_DEID_MARKER.sub(" ", text).split())


def study_time(study_date: Any, study_time_value: Any) -> datetime:
    """The acquisition time from the metadata's `StudyDate` (YYYYMMDD) and `StudyTime` (HHMMSS.fff, leading zeros
    dropped as in the CSV, e.g. `84512.0` is 08:45:12)."""
    try:
        seconds = float(study_time_value)
        clock = f"{int(seconds):06d}"
        return datetime.strptime(f"{int(study_date)} {clock}", "%Y%m%d %H%M%S")
    except (TypeError, ValueError):
        raise ValueError(
            f"StudyDate/StudyTime: expected YYYYMMDD and HHMMSS(.fff), got {study_date!r} and {study_time_value!r}"
        ) from None


def _reports_source(reports: Path) -> Path | zipfile.Path:
    if reports.is_dir():
        return reports
    if reports.is_file() and zipfile.is_zipfile(reports):
        archive = zipfile.Path(reports)
        # The PhysioNet archive wraps files/ in a mimic-cxr-reports/ folder in some releases.
        return archive / "mimic-cxr-reports" if (archive / "mimic-cxr-reports" / "files").exists() else archive
    raise FileNotFoundError(f"reports not found: {reports} is neither a folder nor a zip archive of files/pXX/...")


def frontal_studies(root: Path) -> pd.DataFrame:
    """One frontal image per study from the metadata table: its first PA image by `dicom_id`, else its first AP
    image (columns `dicom_id`, `subject_id`, `study_id`, `view`, `time` as a datetime)."""
    columns = ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"]
    metadata = read_table(root, "mimic-cxr-2.0.0-metadata.csv", columns)
    frontal = metadata[metadata["ViewPosition"].isin(FRONTAL_VIEWS)].copy()
    frontal["view_rank"] = frontal["ViewPosition"].map(FRONTAL_VIEWS.index)
    frontal = frontal.sort_values(["study_id", "view_rank", "dicom_id"]).drop_duplicates("study_id")
    frontal["time"] = [study_time(d, t) for d, t in zip(frontal["StudyDate"], frontal["StudyTime"])]
    return frontal.rename(columns={"ViewPosition": "view"})[["dicom_id", "subject_id", "study_id", "view", "time"]]


def chexpert_labels(root: Path) -> dict[int, list[str]]:
    """`{study_id: [observations marked 1.0]}` from `mimic-cxr-2.0.0-chexpert.csv(.gz)`."""
    table = read_table(root, "mimic-cxr-2.0.0-chexpert.csv", ["study_id", *CHEXPERT_LABELS])
    positive = table[list(CHEXPERT_LABELS)].eq(1.0)
    return {
        int(study): [name for name, flag in zip(CHEXPERT_LABELS, flags) if flag]
        for study, flags in zip(table["study_id"], positive.itertuples(index=False))
    }


def cxr_records(
    root: Path, reports: Path | None = None, hosp: Path | None = None, report_sections: str = "either"
) -> list[dict[str, Any]]:
    """The rows of the MIMIC-CXR dataset (keys = `FEATURES` but `image`; `study_time` still a datetime), one per
    frontal study whose report has the sections `report_sections` asks for (`clean_report`), sorted by `study_id`.

    Args:
        reports: the reports zip or folder (default `root/mimic-cxr-reports.zip`).
        hosp: MIMIC-IV's `hosp` folder for `hadm_id` (None: every `hadm_id` is None).
    """
    root = Path(root)
    source = _reports_source(Path(reports) if reports is not None else root / "mimic-cxr-reports.zip")
    studies = frontal_studies(root)
    labels = chexpert_labels(root)
    hadm_ids = link_admissions(list(studies["subject_id"]), list(studies["time"]), read_admissions(hosp))
    records = []
    rows = zip(studies.itertuples(index=False), hadm_ids)
    for study, hadm_id in tqdm(rows, total=len(studies), desc="MIMIC-CXR reports"):
        folder = f"files/p{str(study.subject_id)[:2]}/p{study.subject_id}/s{study.study_id}"
        report_file = source / f"{folder}.txt"
        if not report_file.is_file():
            raise FileNotFoundError(f"report of study {study.study_id} not found: {report_file}")
        text = clean_report(report_file.read_text(), report_sections)
        if not text:
            continue
        image = root / folder / f"{study.dicom_id}.jpg"
        if not image.is_file():
            raise FileNotFoundError(f"image {study.dicom_id} of study {study.study_id} not found: {image}")
        records.append(
            {
                "image_path": str(image.resolve()),
                "text": text,
                "subject_id": int(study.subject_id),
                "study_id": int(study.study_id),
                "hadm_id": hadm_id,
                "study_time": study.time,
                "view": study.view,
                "labels": labels.get(int(study.study_id), []),
            }
        )
    return records


def build_mimic_cxr(
    root: Path,
    reports: Path | None = None,
    hosp: Path | None = None,
    report_sections: str = "either",
    seed: int = DEFAULT_SEED,
    shortest_edge: int | None = DEFAULT_SHORTEST_EDGE,
    num_proc: int | None = None,
    build_dir: Path | None = None,
) -> datasets.DatasetDict:
    """Build the MIMIC-CXR `DatasetDict` (`cxr_records`, the shared MIMIC patient-level split)."""
    records = cxr_records(root, reports, hosp, report_sections)
    records_by_split = split_by_patient([{**r, "study_time": r["study_time"].isoformat()} for r in records], seed)
    make_example = functools.partial(radiograph_example, shortest_edge=shortest_edge)
    return build_dataset_dict(records_by_split, FEATURES, DESCRIPTION, make_example, num_proc, build_dir)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = cli_parser(__doc__)
    add_mimic_flags(parser, "reports", "hosp", "seed", "report_sections")
    add_image_flags(parser)
    run_cli(build_mimic_cxr, parser, argv, source=SOURCE)


if __name__ == "__main__":
    main()
