"""DICOM 12-lead waveforms and GE MUSE XML (modeling_medbind/ecg_files_medbind.py) against the real PTB record they are
written from: the feature extractor, the pipelines and the CLI take them as they take the WFDB record."""

import numpy as np
import pytest
import wfdb
from fixtures.ecg_exports import write_dicom_ecg, write_muse_xml, write_non_ecg_waveform

from modeling_medbind import MedBindECGFeatureExtractor
from modeling_medbind.ecg_files_medbind import derive_limb_leads, ecg_file_format, read_ecg_file

# The exports hold the record's own 16-bit samples with its gain: DICOM's leads are the record's to float rounding.
# MUSE's III, aVR, aVL, aVF are derived from I and II; PTB's stored ones were derived by its cart from unrounded
# I and II, so they differ by the 16-bit rounding of three leads: at most 2 units of 0.5 uV (1 uV; mean 0.2-0.3 uV).
DERIVED_LEAD_TOLERANCE_MV = 0.001 + 1e-12
# Tolerance of the [12, 1000] tensors, by normalisation. DICOM: the same float64 millivolts as WFDB (measured max abs
# difference 0, bitwise). MUSE: leads I, II, V1-V6 likewise; the derived III, aVR, aVL, aVF within the 1 uV bound
# (measured 0.64 uV in mV; 0.005 z-scored, aVR's standard deviation being 0.08 mV, so 1 uV bounds it by 0.0125).
EXACT_TOLERANCE = 1e-6
DERIVED_TENSOR_TOLERANCE = {"none": 1e-3, "per_lead_zscore": 1.25e-2}
DERIVED_ROWS = [2, 3, 4, 5]  # III, aVR, aVL, aVF in the canonical order


@pytest.fixture
def record(shared_data):
    return shared_data / "ecg" / "s0010_re"


@pytest.fixture
def exports(record, tmp_path):
    return {"dicom": write_dicom_ecg(record, tmp_path / "s0010_re.dcm"),
            "muse": write_muse_xml(record, tmp_path / "s0010_re.xml")}  # fmt: skip


def test_the_limb_lead_derivation_matches_a_record_storing_all_twelve(record):
    signal = wfdb.rdrecord(str(record), channel_names=["i", "ii", "iii", "avr", "avl", "avf"]).p_signal.T
    derived = derive_limb_leads(signal[0], signal[1])
    for row, name in enumerate(["III", "aVR", "aVL", "aVF"], start=2):
        assert np.abs(derived[name] - signal[row]).max() <= DERIVED_LEAD_TOLERANCE_MV, name


@pytest.mark.parametrize("kind", ["dicom", "muse"])
def test_an_export_reads_back_the_records_signal_rate_and_leads(record, exports, kind):
    recording = read_ecg_file(exports[kind])
    wfdb_record = wfdb.rdrecord(str(record), sampto=12000)
    assert recording.sampling_rate == 1000.0 and recording.signal.shape == (12, 12000)
    stored = {name.lower(): row for name, row in zip(wfdb_record.sig_name, wfdb_record.p_signal.T)}
    tolerance = 1e-12 if kind == "dicom" else DERIVED_LEAD_TOLERANCE_MV
    for name, values in zip(recording.lead_names, recording.signal):
        exact = kind == "dicom" or name in ("I", "II") or name.startswith("V")
        np.testing.assert_allclose(values, stored[name.lower()], rtol=0, atol=1e-12 if exact else tolerance)


@pytest.mark.parametrize("kind", ["dicom", "muse"])
@pytest.mark.parametrize("normalization", ["per_lead_zscore", "none"])
def test_the_feature_extractor_gives_the_wfdb_records_tensor(record, exports, kind, normalization):
    extract = MedBindECGFeatureExtractor(normalization=normalization)
    expected = extract(str(record))["ecg_values"]
    values = extract(str(exports[kind]))["ecg_values"]
    assert values.shape == expected.shape == (1, 12, 1000)
    stored_rows = [row for row in range(12) if kind == "dicom" or row not in DERIVED_ROWS]
    np.testing.assert_allclose(values[:, stored_rows], expected[:, stored_rows], rtol=0, atol=EXACT_TOLERANCE)
    # "none" keeps millivolts: the file's units came through, not only the shape of the signal.
    np.testing.assert_allclose(values, expected, rtol=0, atol=DERIVED_TENSOR_TOLERANCE[normalization])


def test_the_format_is_recognised_by_suffix_or_dicom_marker(record, exports, tmp_path):
    unnamed = tmp_path / "export"
    unnamed.write_bytes(exports["dicom"].read_bytes())
    assert [ecg_file_format(path) for path in (exports["dicom"], exports["muse"], unnamed)] == ["dicom", "muse", "dicom"]
    assert ecg_file_format(record) is None and ecg_file_format(f"{record}.hea") is None


def test_missing_leads_are_named_with_the_file(record, tmp_path):
    dicom = write_dicom_ecg(record, tmp_path / "no_v6.dcm", leads=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2",
                                                                   "V3", "V4", "V5"])  # fmt: skip
    with pytest.raises(ValueError, match=rf"DICOM ECG {dicom} .*missing standard lead\(s\) V6"):
        MedBindECGFeatureExtractor()(str(dicom))
    muse = write_muse_xml(record, tmp_path / "no_lead_ii.xml", leads=["I", "V1", "V2", "V3", "V4", "V5", "V6"])
    with pytest.raises(ValueError, match=rf"MUSE ECG {muse} is missing lead\(s\) II, from which"):
        MedBindECGFeatureExtractor()(str(muse))


@pytest.mark.parametrize("write, unit", [(write_dicom_ecg, "furlong"), (write_muse_xml, "FURLONGS")],
                         ids=["dicom", "muse"])  # fmt: skip
def test_an_unknown_unit_is_named_with_the_file(record, tmp_path, write, unit):
    path = write(record, tmp_path / ("ecg.dcm" if write is write_dicom_ecg else "ecg.xml"), unit=unit)
    with pytest.raises(ValueError, match=rf"{path}: lead I is in unknown unit '{unit}'"):
        read_ecg_file(path)


def test_a_truncated_waveform_is_named_with_the_file(record, tmp_path):
    dicom = write_dicom_ecg(record, tmp_path / "short.dcm", truncate_bytes=100)
    with pytest.raises(ValueError, match=rf"DICOM ECG {dicom}: the waveform is truncated"):
        read_ecg_file(dicom)
    muse = write_muse_xml(record, tmp_path / "short.xml", truncate_samples=10)
    with pytest.raises(ValueError, match=rf"MUSE ECG {muse}: lead I is truncated: 11990 samples of the 12000"):
        read_ecg_file(muse)


def test_a_dicom_that_is_not_an_ecg_is_named(shared_data, tmp_path):
    radiograph = shared_data / "cxr" / "rsna_example.dcm"
    with pytest.raises(ValueError, match=rf"{radiograph} is a DICOM file but not an ECG waveform \(SOP class .*CR"):
        MedBindECGFeatureExtractor()(str(radiograph))
    audio = write_non_ecg_waveform(tmp_path / "voice.dcm")
    with pytest.raises(ValueError, match=rf"{audio} is a DICOM file but not an ECG waveform"):
        read_ecg_file(audio)


def test_other_xml_and_missing_files_are_named(tmp_path):
    other = tmp_path / "note.xml"
    other.write_text("<note>not an ECG</note>")
    with pytest.raises(ValueError, match=rf"{other} is not a MUSE XML ECG: its root element is <note>"):
        read_ecg_file(other)
    with pytest.raises(FileNotFoundError, match="ECG file not found: .*absent.dcm"):
        MedBindECGFeatureExtractor()(str(tmp_path / "absent.dcm"))


def test_the_pipeline_and_the_cli_embed_an_export_as_the_wfdb_record(model_dir, loaded, record, exports, tmp_path):
    import json

    import torch
    from safetensors import safe_open
    from transformers import pipeline

    from medbind.cli import EXIT_OK, main

    assert (model_dir / "ecg_files_medbind.py").is_file()  # the Hub folder's remote code reads them too
    embed = pipeline("medbind-feature-extraction", model=loaded[0], processor=loaded[1], device="cpu")
    inputs = [str(record), str(exports["dicom"]), str(exports["muse"])]
    by_pipeline = torch.stack([embed(item, modality="ecg", return_tensors=True) for item in inputs])
    torch.testing.assert_close(by_pipeline[1:], by_pipeline[:1].expand(2, -1), rtol=0, atol=1e-3)
    output = tmp_path / "embeddings.safetensors"
    assert main(["embed", "--model", str(model_dir), "--ecg", *inputs, "--output", str(output)]) == EXIT_OK
    with safe_open(output, framework="pt") as file:
        assert json.loads(file.metadata()["sources"]) == inputs
        torch.testing.assert_close(file.get_tensor("embeddings"), by_pipeline, rtol=1e-4, atol=1e-5)
