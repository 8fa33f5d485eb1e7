"""Tests of modeling_medbind/feature_extraction_medbind.py: WFDB/array ECGs -> `ecg_values [B, 12, 1000]`."""

import numpy as np
import pytest
import torch
import wfdb
from samples import write_record
from scipy.signal import resample_poly

from modeling_medbind.feature_extraction_medbind import CANONICAL_LEAD_NAMES, MedBindECGFeatureExtractor

MIMIC_NAMES = list(CANONICAL_LEAD_NAMES)
CANONICAL_LEAD_NAMES_LOWER = [name.lower() for name in CANONICAL_LEAD_NAMES]


def sinusoids(sampling_rate: float, seconds: float, frequency: float = 5.0, amplitude: float = 1.0) -> np.ndarray:
    """`[12, samples]`: lead k is `amplitude * sin(2 pi f t + k)` (distinct phases, so lead order is visible)."""
    time = np.arange(round(seconds * sampling_rate)) / sampling_rate
    return amplitude * np.sin(2 * np.pi * frequency * time[None, :] + np.arange(12)[:, None])


def zscore(signal: np.ndarray) -> np.ndarray:
    return (signal - signal.mean(axis=-1, keepdims=True)) / (signal.std(axis=-1, keepdims=True) + 1e-6)


@pytest.fixture
def extractor() -> MedBindECGFeatureExtractor:
    return MedBindECGFeatureExtractor()


@pytest.fixture
def raw_extractor() -> MedBindECGFeatureExtractor:
    """Keeps physical units, so amplitudes can be checked."""
    return MedBindECGFeatureExtractor(normalization="none")


def test_batch_of_arrays_gives_float32_12_leads_by_1000_samples(extractor):
    batch = [sinusoids(500, 10), sinusoids(500, 12)]
    values = extractor(batch, sampling_rate=500, return_tensors="pt")["ecg_values"]
    assert values.shape == (2, 12, 1000)
    assert values.dtype == torch.float32


def test_tensor_and_3d_array_inputs_match_a_list_of_arrays(extractor):
    batch = np.stack([sinusoids(500, 10), sinusoids(500, 10, frequency=3)])
    expected = extractor(list(batch), sampling_rate=500)["ecg_values"]
    np.testing.assert_array_equal(extractor(batch, sampling_rate=500)["ecg_values"], expected)
    np.testing.assert_array_equal(extractor(torch.from_numpy(batch), sampling_rate=500)["ecg_values"], expected)


def test_record_path_with_or_without_suffix_and_record_object_agree(extractor, tmp_path):
    record_path = write_record(tmp_path, "rec500", sinusoids(500, 10), 500)
    from_path = extractor(str(record_path))["ecg_values"]
    assert from_path.shape == (1, 12, 1000)
    np.testing.assert_array_equal(extractor(record_path.with_suffix(".hea"))["ecg_values"], from_path)
    np.testing.assert_array_equal(extractor(wfdb.rdrecord(str(record_path)))["ecg_values"], from_path)


def test_record_written_at_500_hz_matches_the_array_it_was_written_from(extractor, tmp_path):
    signal = sinusoids(500, 10)
    record_path = write_record(tmp_path, "rec500", signal, 500)
    from_file = extractor(record_path)["ecg_values"][0]
    np.testing.assert_allclose(from_file, extractor(signal, sampling_rate=500)["ecg_values"][0], atol=1e-3)


@pytest.mark.parametrize("sampling_rate", [100, 257, 500, 1000])
def test_sinusoid_keeps_its_frequency_and_amplitude(raw_extractor, sampling_rate):
    values = raw_extractor(sinusoids(sampling_rate, 10, frequency=5, amplitude=1.5), sampling_rate=sampling_rate)
    expected = sinusoids(100, 10, frequency=5, amplitude=1.5)
    # resample_poly's filter assumes zeros beyond the ends; away from them the sinusoid must be exact
    np.testing.assert_allclose(values["ecg_values"][0][:, 20:-20], expected[:, 20:-20], atol=0.01)


def test_257_hz_record_file_is_resampled_to_1000_samples(raw_extractor, tmp_path):
    record_path = write_record(tmp_path, "rec257", sinusoids(257, 10, amplitude=2.0), 257)
    values = raw_extractor(record_path)["ecg_values"][0]
    assert values.shape == (12, 1000)
    np.testing.assert_allclose(values[:, 20:-20], sinusoids(100, 10, amplitude=2.0)[:, 20:-20], atol=0.01)


def test_content_above_50_hz_is_removed_not_aliased(raw_extractor):
    # 70 Hz sampled at 100 Hz would alias to a full-amplitude 30 Hz wave
    values = raw_extractor(sinusoids(500, 10, frequency=70), sampling_rate=500)["ecg_values"][0]
    assert np.abs(values[:, 20:-20]).max() < 0.01
    aliased = np.abs(np.fft.rfft(values, axis=-1))[:, 300]  # the 30 Hz bin of 10 s at 100 Hz
    assert aliased.max() < 0.01 * 500  # a full-amplitude 30 Hz wave would give 500


def test_mixed_content_keeps_the_low_band_only(raw_extractor):
    mixed = sinusoids(1000, 10, frequency=5) + sinusoids(1000, 10, frequency=120)
    values = raw_extractor(mixed, sampling_rate=1000)["ecg_values"][0]
    np.testing.assert_allclose(values[:, 20:-20], sinusoids(100, 10, frequency=5)[:, 20:-20], atol=0.01)


def test_leads_are_reordered_by_name_case_insensitively(extractor):
    signal = sinusoids(500, 10)
    order = np.random.default_rng(0).permutation(12)
    names = [CANONICAL_LEAD_NAMES[index].upper() for index in order]  # "AVR", "V1", ...
    permuted = extractor(signal[order], sampling_rate=500, lead_names=names)["ecg_values"]
    np.testing.assert_array_equal(permuted, extractor(signal, sampling_rate=500)["ecg_values"])


def test_extra_leads_are_ignored(extractor):
    signal = sinusoids(500, 10)
    with_frank = np.concatenate([signal, np.ones((3, signal.shape[1]))])
    names = CANONICAL_LEAD_NAMES_LOWER + ["vx", "vy", "vz"]
    expected = extractor(signal, sampling_rate=500)["ecg_values"]
    np.testing.assert_array_equal(extractor(with_frank, sampling_rate=500, lead_names=names)["ecg_values"], expected)


def test_missing_lead_is_an_error_naming_the_record_and_the_lead(extractor, tmp_path):
    record_path = write_record(tmp_path, "eleven_leads", sinusoids(500, 10)[:11], 500, MIMIC_NAMES[:11])
    with pytest.raises(ValueError, match=r"'eleven_leads'.*missing standard lead\(s\) V6"):
        extractor(record_path)


def test_long_record_keeps_its_first_ten_seconds(extractor):
    first_ten_seconds = sinusoids(500, 10)
    long_record = np.concatenate([first_ten_seconds, sinusoids(500, 20, frequency=11)], axis=1)
    expected = extractor(first_ten_seconds, sampling_rate=500)["ecg_values"]
    np.testing.assert_array_equal(extractor(long_record, sampling_rate=500)["ecg_values"], expected)


def test_short_record_is_normalised_then_zero_padded_to_ten_seconds(extractor):
    signal = sinusoids(100, 4) + 3.0
    values = extractor(signal, sampling_rate=100)["ecg_values"][0]
    np.testing.assert_allclose(values[:, :400], zscore(signal), atol=1e-5)
    np.testing.assert_array_equal(values[:, 400:], 0.0)


def test_zero_sampling_rate_in_a_header_is_an_error_naming_the_record(extractor):
    record = wfdb.Record(record_name="zero_fs", fs=0, sig_name=MIMIC_NAMES, p_signal=sinusoids(500, 10).T)
    with pytest.raises(ValueError, match="'zero_fs'.*sampling rate 0.0 Hz"):
        extractor(record)


@pytest.mark.parametrize(
    ("ecgs", "options", "message"),
    [
        (np.zeros(5000), {}, "must be \\[leads, samples\\] or"),
        (np.zeros((3, 5000)), {}, "shape \\(3, 5000\\); without lead_names"),
        (np.zeros((5000, 12)), {}, "transposed"),
        (np.zeros((12, 0)), {}, "non-empty array"),
        ([sinusoids(500, 10), {"signal": 1}], {}, "ECG 1 of the batch is a dict"),
        (sinusoids(500, 0.9), {}, "ECG 0 of the batch holds 0.900 s"),
        (sinusoids(500, 10), {"lead_names": MIMIC_NAMES[:11] + ["avr"]}, "more than once"),
        (sinusoids(500, 10), {"lead_names": MIMIC_NAMES[:11]}, "12 signals but 11 lead names"),
        *[(sinusoids(500, 10), {"sampling_rate": rate}, "sampling rate") for rate in (None, 0, -500, float("nan"))],
    ],
)
def test_unusable_ecgs_are_errors(extractor, ecgs, options, message):
    with pytest.raises(ValueError, match=message):
        extractor(ecgs, **{"sampling_rate": 500, **options})


def test_nan_samples_are_filled_by_linear_interpolation(raw_extractor):
    ramp = np.tile(np.linspace(0.0, 1.0, 1000), (12, 1))
    with_gaps = ramp.copy()
    with_gaps[3, 100:150] = np.nan
    with_gaps[5, :20] = np.nan  # before the first valid sample: the first valid value is repeated
    values = raw_extractor(with_gaps, sampling_rate=100)["ecg_values"][0]
    np.testing.assert_allclose(values[3], ramp[3], atol=1e-6)
    np.testing.assert_allclose(values[5, :20], ramp[5, 20], atol=1e-6)
    assert np.isfinite(values).all()


def test_nan_written_by_wfdb_is_interpolated(raw_extractor, tmp_path):
    signal = sinusoids(100, 10)
    signal[2, 500:510] = np.nan
    record_path = write_record(tmp_path, "gappy", signal, 100)
    assert np.isnan(wfdb.rdrecord(str(record_path)).p_signal).any()
    values = raw_extractor(record_path)["ecg_values"][0]
    expected = np.interp(np.arange(500, 510), [499, 510], signal[2, [499, 510]])
    np.testing.assert_allclose(values[2, 500:510], expected, atol=1e-3)


def test_all_nan_lead_is_an_error_naming_the_lead(extractor, tmp_path):
    signal = sinusoids(100, 10)
    signal[7] = np.nan
    record_path = write_record(tmp_path, "dead_lead", signal, 100)
    with pytest.raises(ValueError, match="'dead_lead'.*lead V2 has no valid sample"):
        extractor(record_path)


def test_mostly_nan_lead_is_an_error(extractor):
    signal = sinusoids(100, 10)
    signal[0, :600] = np.nan
    with pytest.raises(ValueError, match="lead I is 60% NaN"):
        extractor(signal, sampling_rate=100)


def test_per_lead_zscore_gives_zero_mean_and_unit_std(extractor):
    signal = sinusoids(500, 10) * np.arange(1, 13)[:, None] + np.arange(12)[:, None]
    values = extractor(signal, sampling_rate=500)["ecg_values"][0]
    np.testing.assert_allclose(values.mean(axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(values.std(axis=-1), 1.0, atol=1e-4)


def test_flat_lead_normalises_to_zeros_not_nan(extractor):
    signal = sinusoids(100, 10)
    signal[4] = 0.25
    values = extractor(signal, sampling_rate=100)["ecg_values"][0]
    np.testing.assert_array_equal(values[4], 0.0)


def test_missing_header_is_file_not_found_naming_it(extractor, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.hea"):
        extractor(tmp_path / "nowhere")


def test_missing_signal_file_is_file_not_found_naming_the_header(extractor, tmp_path):
    record_path = write_record(tmp_path, "no_dat", sinusoids(100, 10), 100)
    record_path.with_suffix(".dat").unlink()
    with pytest.raises(FileNotFoundError, match="no_dat.hea"):
        extractor(record_path)


def test_corrupt_header_is_an_error_naming_the_file(extractor, tmp_path):
    (tmp_path / "corrupt.hea").write_text("this is not a WFDB header\n\x00\x01garbage\n")
    with pytest.raises(ValueError, match="corrupt.hea"):
        extractor(tmp_path / "corrupt")


def test_config_round_trips_through_save_pretrained(tmp_path):
    extractor = MedBindECGFeatureExtractor(normalization="none", max_nan_fraction=0.2)
    extractor.save_pretrained(tmp_path)
    loaded = MedBindECGFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    assert loaded.lead_names == MIMIC_NAMES


def test_unknown_normalization_is_an_error():
    with pytest.raises(ValueError, match="normalization must be one of"):
        MedBindECGFeatureExtractor(normalization="minmax")


def test_real_ptb_record_matches_an_independent_computation_lead_by_lead(extractor, shared_data):
    record_path = shared_data / "ecg" / "s0010_re"
    record = wfdb.rdrecord(str(record_path))
    first_ten_seconds = record.p_signal[: 10 * int(record.fs)].T
    names = [name.lower() for name in record.sig_name]
    values = extractor(record_path)["ecg_values"][0]
    for lead, name in enumerate(CANONICAL_LEAD_NAMES):
        expected = zscore(resample_poly(first_ten_seconds[names.index(name.lower())], 100, int(record.fs)))
        np.testing.assert_allclose(values[lead], expected, atol=1e-4, err_msg=f"lead {name}")


def test_lead_permuted_500_hz_copy_with_mimic_names_gives_the_same_tensor(extractor, shared_data, tmp_path):
    record = wfdb.rdrecord(str(shared_data / "ecg" / "s0010_re"))
    first_ten_seconds = record.p_signal[: 10 * int(record.fs), :12].T
    at_500_hz = resample_poly(first_ten_seconds, 1, 2, axis=-1)
    ptb_order = write_record(tmp_path, "ptb_order", at_500_hz, 500, record.sig_name[:12])
    order = np.random.default_rng(0).permutation(12)
    mimic_names = [CANONICAL_LEAD_NAMES[CANONICAL_LEAD_NAMES_LOWER.index(record.sig_name[index])] for index in order]
    permuted = write_record(tmp_path, "mimic_permuted", at_500_hz[order], 500, mimic_names)
    np.testing.assert_array_equal(extractor(permuted)["ecg_values"], extractor(ptb_order)["ecg_values"])
    # and the 1000 Hz original tells the same story (two resamplings differ only near the band edge)
    correlation = np.corrcoef(extractor(permuted)["ecg_values"][0, 0], extractor(record)["ecg_values"][0, 0])[0, 1]
    assert correlation > 0.99

