"""Tests of processing/medbind_processing/demo.py: the synthetic tri-modal demo data."""

import re
from datetime import datetime
from functools import partial
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from scipy.signal import find_peaks
from scipy.stats import spearmanr

from medbind_processing import demo
from medbind_processing.labels import CHEXPERT_LABELS
from medbind_processing.mimic_ecg import ecg_labels_from_text
from medbind_processing.mimic_outcomes import FEATURES as OUTCOME_FEATURES
from modeling_medbind import CANONICAL_LEAD_NAMES

LEAD = {name: index for index, name in enumerate(CANONICAL_LEAD_NAMES)}


def measure_ctr(image) -> float:
    """Cardiothoracic ratio read off a rendered radiograph: widest bright heart run / widest lung span."""
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    heart_widths, thorax_widths = [], []
    for row in pixels[int(0.55 * demo.IMAGE_SIZE) : int(0.78 * demo.IMAGE_SIZE)]:
        inner = row[20:236]  # inside the soft tissue, away from the dark air at the borders
        dark = np.flatnonzero(inner < 0.4)
        if dark.size:
            thorax_widths.append(dark[-1] - dark[0])
        bright = inner > 0.53
        start = end = demo.IMAGE_SIZE // 2 + 10 - 20
        if bright[start]:
            while start > 0 and bright[start - 1]:
                start -= 1
            while end < inner.size - 1 and bright[end + 1]:
                end += 1
            heart_widths.append(end - start + 1)
    return max(heart_widths) / max(thorax_widths)


def r_peaks(ecg: np.ndarray) -> np.ndarray:
    """Sample indices of the QRS complexes: peaks of the spatial magnitude over the 12 leads."""
    magnitude = np.sqrt((ecg**2).sum(axis=0))
    peaks, _ = find_peaks(magnitude, height=0.5 * magnitude.max(), distance=25)
    return peaks


def st_deviation(ecg: np.ndarray) -> float:
    """Largest ST shift over the leads: median level 100 ms after R minus 60 ms before R (PR segment), in mV."""
    peaks = r_peaks(ecg)
    peaks = peaks[(peaks >= 6) & (peaks < ecg.shape[1] - 10)]
    shift = np.median(ecg[:, peaks + 10], axis=1) - np.median(ecg[:, peaks - 6], axis=1)
    return float(np.abs(shift).max())


@pytest.fixture(scope="module")
def patients():
    return demo.sample_patients(160, seed=7)


@pytest.fixture(scope="module")
def drawn(patients):
    """`drawn.cxr(patient)`, `drawn.ecg(patient)`: a patient of `patients` drawn once for all the module's tests
    (drawing is most of their time). A changed patient is not one of them: draw it with `demo.render_*`."""
    cache = {}

    def draw(render, patient):
        assert patient is patients[patient["index"]], "only the fixture's own, unchanged patients are cached"
        if (render, patient["index"]) not in cache:
            cache[render, patient["index"]] = render(patient)
        return cache[render, patient["index"]]

    return SimpleNamespace(cxr=partial(draw, demo.render_cxr), ecg=partial(draw, demo.render_ecg))


@pytest.fixture(scope="module")
def built():
    return demo.build_demo(num_patients=40, seed=5)


def test_sample_patients_rejects_an_empty_cohort():
    with pytest.raises(ValueError, match="num_patients"):
        demo.sample_patients(0)


def test_demo_has_the_columns_of_the_mimic_builders(built):
    cxr, ecg, pairs = built["cxr"], built["ecg"], built["pairs"]
    assert isinstance(cxr["train"].features["image"], datasets.Image)
    assert cxr["train"].features["labels"].feature.names == list(CHEXPERT_LABELS)
    assert ecg["train"].features["ecg"] == datasets.Array2D((12, 1000), "float32")
    assert ecg["train"].features["labels"].feature.names == ["NORM", "HYP", "STTC", "MI", "CD"]
    assert set(pairs["train"].column_names) == {"subject_id", "hadm_id", "cxr_study_id", "ecg_study_id", "link",
                                                "hours_apart"}  # fmt: skip
    assert built["outcomes"]["train"].features == OUTCOME_FEATURES
    assert {"cxr_text", "ecg_text"} <= set(OUTCOME_FEATURES)
    row = cxr["train"][0]
    assert row["image"].mode == "L" and row["image"].size == (256, 256)
    assert row["view"] in ("AP", "PA")
    datetime.fromisoformat(row["study_time"])
    assert ecg["train"][0]["sampling_rate"] == 100 and np.asarray(ecg["train"][0]["ecg"]).shape == (12, 1000)
    for dataset_dict in built.values():
        assert all("SYNTHETIC" in split.info.description for split in dataset_dict.values())


def test_every_patient_has_at_least_one_modality_and_pairs_are_the_patients_with_both(built):
    cxr_subjects = {s for split in built["cxr"].values() for s in split["subject_id"]}
    ecg_subjects = {s for split in built["ecg"].values() for s in split["subject_id"]}
    pair_subjects = {s for split in built["pairs"].values() for s in split["subject_id"]}
    assert len(cxr_subjects | ecg_subjects) == 40
    assert pair_subjects == cxr_subjects & ecg_subjects
    assert 0 < len(pair_subjects) < 40


def test_splits_never_share_a_patient_and_pairs_stay_in_their_studies_split(built):
    for dataset_dict in built.values():
        subjects = [set(split["subject_id"]) for split in dataset_dict.values()]
        assert sum(map(len, subjects)) == len(set().union(*subjects))  # no patient in two splits
    for name, pairs in built["pairs"].items():
        assert set(pairs["cxr_study_id"]) <= set(built["cxr"][name]["study_id"])
        assert set(pairs["ecg_study_id"]) <= set(built["ecg"][name]["study_id"])


def test_pairs_link_by_hadm_id_or_else_by_time_within_24_hours(built):
    cxr = {r["study_id"]: r for split in built["cxr"].values() for r in split.remove_columns("image")}
    ecg = {r["study_id"]: r for split in built["ecg"].values() for r in split.remove_columns("ecg")}
    rows = [r for split in built["pairs"].values() for r in split]
    for pair in rows:
        image_study, ecg_study = cxr[pair["cxr_study_id"]], ecg[pair["ecg_study_id"]]
        assert image_study["subject_id"] == ecg_study["subject_id"] == pair["subject_id"]
        assert image_study["hadm_id"] == ecg_study["hadm_id"] == pair["hadm_id"]
        assert pair["link"] == ("time" if pair["hadm_id"] is None else "hadm_id")
        gap = datetime.fromisoformat(image_study["study_time"]) - datetime.fromisoformat(ecg_study["ecg_time"])
        assert pair["hours_apart"] == pytest.approx(abs(gap.total_seconds()) / 3600)
        assert pair["hours_apart"] <= 24
    assert {pair["link"] for pair in rows} == {"hadm_id", "time"}  # both rules are exercised above


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(patients):
    assert demo.sample_patients(160, seed=7) == patients
    first = demo.sample_patients(3, seed=11)
    np.testing.assert_array_equal(np.asarray(demo.render_cxr(first[0])), np.asarray(demo.render_cxr(first[0])))
    np.testing.assert_array_equal(demo.render_ecg(first[1]), demo.render_ecg(demo.sample_patients(3, seed=11)[1]))
    other = demo.sample_patients(3, seed=12)
    assert [p["ctr"] for p in other] != [p["ctr"] for p in first]
    built_once, built_twice = demo.build_demo(12, seed=2), demo.build_demo(12, seed=2)
    for name in built_once:
        for split in built_once[name]:
            assert built_once[name][split].to_dict() == built_twice[name][split].to_dict()


def test_limb_leads_obey_einthoven_and_goldberger(patients, drawn):
    ecg = drawn.ecg(patients[0]).astype(np.float64)
    lead_i, lead_ii = ecg[LEAD["I"]], ecg[LEAD["II"]]
    np.testing.assert_allclose(ecg[LEAD["III"]], lead_ii - lead_i, atol=1e-5)
    np.testing.assert_allclose(ecg[LEAD["aVR"]], -(lead_i + lead_ii) / 2, atol=1e-5)
    np.testing.assert_allclose(ecg[LEAD["aVF"]], lead_ii - lead_i / 2, atol=1e-5)


def test_heart_size_measured_on_the_cxr_tracks_the_qrs_voltage_of_the_same_patients_ecg(patients, drawn):
    # Pneumonic consolidation beside the heart hides its border (the silhouette sign), so it is left out.
    chosen = [p for p in patients if p["condition"] != "pneumonia"][:60]
    measured_ctr = [measure_ctr(drawn.cxr(p)) for p in chosen]
    # QRS amplitude as the peak spatial magnitude over the 12 leads, which does not depend on the electrical axis.
    qrs_amplitude = [np.percentile(np.sqrt((drawn.ecg(p) ** 2).sum(axis=0)), 99) for p in chosen]
    assert spearmanr(measured_ctr, [p["ctr"] for p in chosen]).statistic > 0.9
    assert spearmanr(measured_ctr, qrs_amplitude).statistic > 0.6


def test_ecg_heart_rate_measured_from_r_peaks_matches_the_rate_in_the_report(patients, drawn):
    for patient in patients[:25]:
        text = demo.render_ecg_report(demo.ecg_statements(patient))
        stated = int(re.search(r"Heart rate (\d+) bpm", text).group(1))
        measured = 60.0 * demo.ECG_SAMPLING_RATE / np.diff(r_peaks(drawn.ecg(patient))).mean()
        assert measured == pytest.approx(stated, rel=0.06)


def test_severity_shows_as_st_deviation_in_the_ecg_and_opacity_in_the_cxr(patients, drawn):
    for condition in ("infarction", "hypertrophy"):
        cardiac = [p for p in patients if p["condition"] == condition]
        deviations = [st_deviation(drawn.ecg(p)) for p in cardiac]
        assert spearmanr(deviations, [p["severity"] for p in cardiac]).statistic > 0.7, condition

    pneumonia = [p for p in patients if p["condition"] == "pneumonia"]
    opacified = []
    for patient in pneumonia:
        lower_zone = np.asarray(drawn.cxr(patient), dtype=np.float64)[128:200] / 255
        # The lateral lower zone of the affected lung (the patient's right is the image's left).
        lateral = lower_zone[:, 36:92] if patient["pneumonia_side"] == "right" else lower_zone[:, 185:225]
        opacified.append((lateral > 0.45).mean())
    assert spearmanr(opacified, [p["severity"] for p in pneumonia]).statistic > 0.6


def test_ecg_labels_follow_the_condition_under_the_mimic_rules(patients):
    expected = {"normal": "NORM", "pneumonia": "NORM", "hypertrophy": "HYP", "infarction": "MI", "conduction": "CD"}
    for patient in patients:
        labels = ecg_labels_from_text(demo.render_ecg_report(demo.ecg_statements(patient)))
        assert expected[patient["condition"]] in labels, (patient["condition"], labels)


def test_cxr_reports_and_labels_name_the_graded_findings(patients):
    for patient in patients:
        text, findings = demo.cxr_report(patient), demo.cxr_findings(patient)
        assert ("cardiomegaly" in text.lower()) == (patient["ctr"] >= demo.CARDIOMEGALY_CTR)
        assert ("Cardiomegaly" in findings) == (patient["ctr"] >= demo.CARDIOMEGALY_CTR)
        if patient["ctr"] > 0.6:
            assert "Severe cardiomegaly." in text
        assert ("pneumonia" in text.lower()) == (patient["condition"] == "pneumonia") == ("Pneumonia" in findings)
        assert (findings == ["No Finding"]) == (not set(findings) - {"No Finding"})


def test_a_report_depends_only_on_what_its_study_shows(patients, drawn):
    # The per-patient seed draws the noise of the image and of the ECG; a report that changed with it would hold
    # words no study could show (as several phrasings of one normal radiograph did).
    for patient in patients[:40]:
        reseeded = {**patient, "seed": [99, patient["index"]]}
        assert demo.cxr_report(reseeded) == demo.cxr_report(patient)
        assert demo.ecg_statements(reseeded) == demo.ecg_statements(patient)
        assert not np.array_equal(np.asarray(demo.render_cxr(reseeded)), np.asarray(drawn.cxr(patient)))


def test_normal_studies_split_into_many_reports_by_what_the_radiograph_shows(patients):
    # One report for every normal study made retrieving its report a coin toss even for a perfect model.
    normal = [p for p in patients if demo.cxr_findings(p) == ["No Finding"]]
    reports = [demo.cxr_report(p) for p in normal]
    assert max(reports.count(report) for report in reports) < 0.3 * len(reports)


def lowest_lung_row(image) -> int:
    """The lowest image row with dark lung beside the heart: where the diaphragm's domes are."""
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    lung_columns = np.r_[40:80, 180:216]
    return int(np.flatnonzero((pixels[:, lung_columns] < 0.3).mean(axis=1) > 0.5).max())


def test_lung_volumes_in_the_report_are_the_height_of_the_diaphragm(patients, drawn):
    levels = {volume: [] for volume in demo.LUNG_VOLUMES}
    for patient in patients[:60]:
        if set(demo.cxr_findings(patient)) & {"Pneumonia", "Edema"}:
            continue  # opacities at the lung bases hide where the lungs end
        levels[patient["lung_volumes"]].append(lowest_lung_row(drawn.cxr(patient)))
        assert ("Lung volumes are low." in demo.cxr_report(patient)) == (patient["lung_volumes"] == "low")
        assert ("hyperinflated" in demo.cxr_report(patient)) == (patient["lung_volumes"] == "hyperinflated")
    assert max(levels["low"]) < min(levels["normal"]) and max(levels["normal"]) < min(levels["hyperinflated"])


def frontal_axis(ecg: np.ndarray) -> float:
    """The QRS axis in the frontal plane (degrees) from the net R-peak amplitudes of leads I and aVF."""
    peaks = r_peaks(ecg)
    return float(np.degrees(np.arctan2(np.median(ecg[LEAD["aVF"], peaks]), np.median(ecg[LEAD["I"], peaks]))))


def test_lung_volumes_show_in_the_ecg_as_the_axis_and_the_voltage(patients):
    # The heart hangs from the diaphragm: the ECG of the same heart turns with the breath and air damps it.
    patient = next(p for p in patients if p["condition"] == "normal")
    ecgs = {volume: demo.render_ecg({**patient, "lung_volumes": volume}) for volume in demo.LUNG_VOLUMES}
    axes = [frontal_axis(ecgs[volume]) for volume in ("low", "normal", "hyperinflated")]
    assert axes == sorted(axes) and axes[-1] - axes[0] > 30
    amplitude = {volume: np.abs(ecg).max() for volume, ecg in ecgs.items()}
    assert amplitude["hyperinflated"] < 0.85 * amplitude["normal"]


@pytest.mark.parametrize(
    "factor, absent, phrase, region",
    [
        ("prior_cabg", False, "sternotomy wires", (slice(70, 150), slice(118, 140))),
        ("cholecystectomy", False, "Cholecystectomy clips", (slice(170, 256), slice(30, 120))),
        ("rib_fracture", None, "rib fractures", (slice(80, 150), slice(10, 246))),
    ],
)
def test_incidental_findings_are_drawn_where_the_report_says(patients, drawn, factor, absent, phrase, region):
    patient = next(p for p in patients if p[factor] not in (absent, None) and p["condition"] == "normal")
    without = {**patient, factor: absent}
    assert phrase in demo.cxr_report(patient) and phrase not in demo.cxr_report(without)
    difference = np.abs(np.asarray(drawn.cxr(patient), float) - np.asarray(demo.render_cxr(without), float))
    assert difference[region].max() > 40 and difference[region].sum() > 0.9 * difference.sum()


def test_outcomes_are_the_admissions_and_name_their_studies_and_reports(built):
    studies = {"cxr": {}, "ecg": {}}  # study id -> (split, report)
    for name, by_id in studies.items():
        for split, rows in built[name].items():
            by_id.update({row["study_id"]: (split, row["text"]) for row in rows.select_columns(["study_id", "text"])})
    admitted = {s for name in ("cxr", "ecg") for split in built[name].values()
                for s, h in zip(split["subject_id"], split["hadm_id"]) if h is not None}
    rows = [(split, row) for split, data in built["outcomes"].items() for row in data]
    assert {row["subject_id"] for _, row in rows} == admitted and len(rows) == len(admitted)
    for split, row in rows:
        assert row["hadm_id"] is not None
        assert row["cxr_study_id"] is not None or row["ecg_study_id"] is not None
        for name in ("cxr", "ecg"):
            study = row[f"{name}_study_id"]
            assert (study is None) == (row[f"{name}_text"] is None)
            if study is not None:
                assert studies[name][study] == (split, row[f"{name}_text"])
        assert re.fullmatch(r"(Male|Female) patient, who is at the age of \d+, was admitted as .+\. Location: .+\.",
                            row["mortality_text"])


def test_outcomes_follow_severity_and_the_dead_are_not_readmitted():
    patients = demo.sample_patients(3000, seed=3)
    admitted = [p for p in patients if p["hadm_id"] is not None and p["condition"] != "normal"]
    outcomes = [demo.visit_outcome(p) for p in admitted]
    severe = np.array([p["severity"] > 0.7 for p in admitted])
    mild = np.array([p["severity"] < 0.45 for p in admitted])
    died = np.array([o["mortality"] for o in outcomes])
    readmitted = np.array([o["readmission"] for o in outcomes])
    assert 0.05 < died.mean() < 0.6 and 0.05 < readmitted.mean() < 0.6
    assert died[severe].mean() > 1.5 * died[mild].mean()
    # The sickest die more often, which removes them from readmission: compare the survivors.
    assert readmitted[severe & ~died.astype(bool)].mean() > 1.2 * readmitted[mild & ~died.astype(bool)].mean()
    for patient, outcome in zip(admitted, outcomes):
        summary = demo.discharge_summary(patient, outcome)
        assert ("Discharge disposition: Expired." in summary) == bool(outcome["mortality"])
        assert not (outcome["mortality"] and outcome["readmission"])


def test_command_line_writes_datasets_and_cards_loadable_from_disk(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--num_patients", "10", "--seed", "3"])
    loaded = {name: datasets.load_from_disk(str(tmp_path / name)) for name in ("cxr", "ecg", "pairs", "outcomes")}
    assert sum(split.num_rows for name in ("cxr", "ecg") for split in loaded[name].values()) >= 10
    for name in loaded:
        card = (tmp_path / name / "README.md").read_text()
        assert "SYNTHETIC" in card and "apache-2.0" in card
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "NORM" in printed
