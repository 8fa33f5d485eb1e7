"""Tests of processing/medbind_processing/mimic_pair.py: the visit / 24-hour linking rule and the builder on miniature MIMIC trees."""

from datetime import datetime, timedelta

import pytest
from fixtures.mimic import write_mimic_cxr, write_mimic_ecg, write_mimic_iv

from medbind_processing import mimic_pair

T0 = datetime(2180, 1, 1, 12, 0)


def study(study_id, subject_id=1, hadm_id=None, hours=0.0):
    return {"study_id": study_id, "subject_id": subject_id, "hadm_id": hadm_id, "time": T0 + timedelta(hours=hours)}


def linked(cxr, ecg):
    return [(p["cxr_study_id"], p["ecg_study_id"], p["link"]) for p in mimic_pair.pair_records(cxr, ecg)]


def test_studies_23h59_apart_pair_by_time():
    pairs = mimic_pair.pair_records([study(1)], [study(2, hours=23 + 59 / 60)])
    assert [(p["link"], p["hadm_id"]) for p in pairs] == [("time", None)]
    assert pairs[0]["hours_apart"] == pytest.approx(23 + 59 / 60)


def test_a_shared_hadm_id_pairs_however_far_apart():
    pairs = mimic_pair.pair_records([study(1, hadm_id=7)], [study(2, hadm_id=7, hours=90)])
    assert [(p["link"], p["hadm_id"], p["hours_apart"]) for p in pairs] == [("hadm_id", 7, 90.0)]


@pytest.mark.parametrize(
    ("cxr", "ecg", "expected"),
    [
        (study(1), study(2, hours=24 + 1 / 60), []),
        (study(1), study(2, hours=-24), [(1, 2, "time")]),
        (study(1, hadm_id=7), study(2, hadm_id=8, hours=0.1), []),
        (study(1, hadm_id=7), study(2, hours=3), [(1, 2, "time")]),
        (study(1, subject_id=1), study(2, subject_id=2), []),
    ],
    ids=["24h01-apart", "24h00-inclusive", "different-hadm-ids-minutes-apart", "one-missing-hadm-id-by-time",
         "other-patients"],
)  # fmt: skip
def test_the_linking_rule(cxr, ecg, expected):
    assert linked([cxr], [ecg]) == expected


def test_visit_links_win_over_closer_time_links_and_pairs_are_one_to_one():
    cxr = [study(1, hadm_id=7), study(3, hours=1)]
    ecg = [study(2, hadm_id=7, hours=30), study(4, hours=0.5), study(5, hours=2)]
    assert linked(cxr, ecg) == [(1, 2, "hadm_id"), (3, 4, "time")]
    # Two CXRs competing for one ECG: the closer one gets it, the other stays unpaired.
    assert linked([study(1, hours=5), study(3, hours=1)], [study(2)]) == [(3, 2, "time")]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    return write_mimic_cxr(root / "cxr"), write_mimic_ecg(root / "ecg"), write_mimic_iv(root / "mimiciv") / "hosp"


@pytest.fixture(scope="module")
def built(raw):
    cxr_root, ecg_root, hosp = raw
    return mimic_pair.build_mimic_pair(cxr_root, ecg_root, hosp=hosp)


def pair_rows(built) -> list[tuple]:
    rows = sorted((r for split in built.values() for r in split), key=lambda r: r["cxr_study_id"])
    return [(r["cxr_study_id"], r["ecg_study_id"], r["link"], r["hadm_id"], r["hours_apart"]) for r in rows]


def test_builder_pairs_the_single_label_ecgs_the_ecg_builder_keeps(built):
    # ECG 40000001 (HYP + STTC + CD) is not in the default ECG dataset, so CXR 50000001 stays unpaired.
    assert pair_rows(built) == [
        (50000004, 40000002, "time", None, pytest.approx(23 + 59 / 60)),
        (50000006, 40000005, "hadm_id", 22000003, pytest.approx(22 + 45.2 / 60)),
    ]


def test_all_records_pairs_every_ecg(raw):
    cxr_root, ecg_root, hosp = raw
    assert pair_rows(mimic_pair.build_mimic_pair(cxr_root, ecg_root, hosp=hosp, all_records=True)) == [
        (50000001, 40000001, "hadm_id", 22000001, pytest.approx(59.0)),
        (50000004, 40000002, "time", None, pytest.approx(23 + 59 / 60)),
        (50000006, 40000005, "hadm_id", 22000003, pytest.approx(22 + 45.2 / 60)),
    ]


def test_splits_never_share_a_patient(built):
    subjects = [set(split["subject_id"]) for split in built.values()]
    assert sum(map(len, subjects)) == len(set().union(*subjects))  # no patient in two splits


def test_command_line_needs_both_roots(tmp_path):
    with pytest.raises(SystemExit):
        mimic_pair.main(["--cxr_root", str(tmp_path), "--out", str(tmp_path / "out")])
