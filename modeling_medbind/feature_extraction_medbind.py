"""ECG feature extractor for MedBind: WFDB records, DICOM waveforms, MUSE XML or arrays in, `ecg_values [B, 12, 1000]` (10 s at 100 Hz) out."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Union

import numpy as np
import torch
import wfdb
from scipy.signal import resample_poly
from transformers import BatchFeature, FeatureExtractionMixin
from transformers.utils import TensorType

from .configuration_medbind import CANONICAL_LEAD_NAMES, MedBindECGConfig
from .ecg_files_medbind import ecg_file_format, read_ecg_file

NORMALIZATIONS = ("per_lead_zscore", "none")
# Suffixes a user may leave on a record path; wfdb wants the record name without them.
WFDB_SUFFIXES = (".hea", ".dat", ".mat", ".xyz")
# Ratios of sampling rates are reduced to a fraction with at most this denominator, which keeps the polyphase
# filter of resample_poly small for odd rates (257 Hz -> 100/257) while staying exact for every real ECG rate.
MAX_RESAMPLING_DENOMINATOR = 1000

ECGInput = Union[str, os.PathLike, wfdb.Record, np.ndarray, torch.Tensor]


class MedBindECGFeatureExtractor(FeatureExtractionMixin):
    r"""
    Turns 12-lead ECGs into the ECG tower's input: `ecg_values` of shape `[B, len(lead_names), num_samples]`, float32.
    [`MedBindProcessor.from_config`] sets `sampling_rate`, `num_samples` and `lead_names` from the model's `ecg_config`.

    Each item goes through, in this order:
    1. **Leads**: the output leads (`lead_names`, by default I, II, III, aVR, aVL, aVF, V1-V6) are picked by name,
       case-insensitively (PTB writes `avr`, MIMIC-IV-ECG `aVR`, others `AVR`); extra leads (PTB's Frank leads
       `vx vy vz`) are ignored. An array without `lead_names` must already hold exactly the output leads, in order.
    2. **Window**: the first `num_samples / sampling_rate` seconds (10 s) are kept, as in the paper.
    3. **Missing samples** (WFDB stores NaN for them; inf is treated the same): filled by linear interpolation
       within the lead (constant beyond the first/last valid sample). A lead with no valid sample, or with more
       than `max_nan_fraction` of its window missing, is an error.
    4. **Resampling** to `sampling_rate` (100 Hz) with `scipy.signal.resample_poly`, whose polyphase FIR filter
       low-pass filters before decimating, as the paper does (content above 50 Hz is removed, not aliased).
    5. **Normalisation** (`normalization`): `"per_lead_zscore"` subtracts each lead's mean and divides by its
       standard deviation plus `normalization_epsilon` over the samples of step 2 (a flat lead becomes zeros, not
       NaN; units stop mattering, which matters across datasets storing mV or uV); `"none"` keeps physical units.
    6. **Padding**: records shorter than the window are zero-padded at the end (after normalisation, so the
       padding equals the lead mean and does not shift the statistics).

    Args:
        sampling_rate (`int`): output rate in Hz (100 in the paper).
        num_samples (`int`): output samples per lead (1000: 10 s at 100 Hz).
        max_nan_fraction (`float`): largest share of missing samples in a lead's window that is interpolated.
        min_duration_s (`float`): shorter records are an error (too little signal to embed).
    """

    model_input_names = ["ecg_values"]

    def __init__(
        self,
        sampling_rate: int = MedBindECGConfig.sampling_rate,
        num_samples: int = MedBindECGConfig.num_samples,
        lead_names: Sequence[str] = CANONICAL_LEAD_NAMES,
        normalization: str = "per_lead_zscore",
        normalization_epsilon: float = 1e-6,
        max_nan_fraction: float = 0.1,
        min_duration_s: float = 1.0,
        **kwargs,
    ):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if not (sampling_rate > 0 and num_samples > 0):
            raise ValueError(f"sampling_rate and num_samples must be positive, got {sampling_rate} and {num_samples}")
        if not 0.0 <= max_nan_fraction < 1.0:
            raise ValueError(f"max_nan_fraction must lie in [0, 1), got {max_nan_fraction}")
        super().__init__(**kwargs)
        self.sampling_rate = sampling_rate
        self.num_samples = num_samples
        self.lead_names = list(lead_names)
        self.normalization = normalization
        self.normalization_epsilon = normalization_epsilon
        self.max_nan_fraction = max_nan_fraction
        self.min_duration_s = min_duration_s

    def __call__(
        self,
        ecgs: ECGInput | Sequence[ECGInput],
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        return_tensors: str | TensorType | None = None,
    ) -> BatchFeature:
        """Extract `ecg_values [B, len(lead_names), num_samples]` float32 from one ECG or a batch.

        Args:
            ecgs: one item or a list of items, each a WFDB record path (`str`/`Path`, with or without `.hea`), a
                DICOM ECG waveform (`.dcm`) or GE MUSE XML (`.xml`) path (see `ecg_files_medbind`), a `wfdb.Record`,
                or an array/tensor `[leads, samples]`; a 3-D array `[B, leads, samples]` is a batch.
            sampling_rate: rate in Hz of the array items (records carry their own and ignore it).
            lead_names: lead names of the rows of the array items (records carry their own).

        Raises:
            FileNotFoundError: a record's header or signal file, or an ECG file, is missing.
            ValueError: unreadable/corrupt header, unknown or non-positive sampling rate, wrong shape, a missing or
                duplicated standard lead, all-NaN or mostly-NaN lead, or under `min_duration_s` of signal. Every
                message names the file, record or batch position.
        """
        items = _as_batch(ecgs)
        values = np.stack(
            [
                self._extract(item, f"ECG {index} of the batch", sampling_rate, lead_names)
                for index, item in enumerate(items)
            ]
        )
        return BatchFeature({"ecg_values": values}, tensor_type=return_tensors)

    def _extract(self, item: ECGInput, position: str, sampling_rate: float | None, lead_names) -> np.ndarray:
        """One item -> `[len(self.lead_names), num_samples]` float32 (see the class docstring for the steps)."""
        signal, source_rate, names, source = _load(item, position, sampling_rate, lead_names, self.lead_names)
        source_rate = _checked_sampling_rate(source_rate, source)
        signal = _select_leads(signal, names, self.lead_names, source)
        window_s = self.num_samples / self.sampling_rate
        signal = signal[:, : math.ceil(window_s * source_rate)]
        duration_s = signal.shape[1] / source_rate
        if duration_s < self.min_duration_s:
            raise ValueError(
                f"{source} holds {duration_s:.3f} s of signal; at least {self.min_duration_s} s is needed"
            )
        signal = _fill_missing(signal, self.lead_names, self.max_nan_fraction, source)
        signal = resample(signal, source_rate, self.sampling_rate)[:, : self.num_samples]
        if self.normalization == "per_lead_zscore":
            mean = signal.mean(axis=1, keepdims=True)
            signal = (signal - mean) / (signal.std(axis=1, keepdims=True) + self.normalization_epsilon)
        padding = self.num_samples - signal.shape[1]
        return np.pad(signal, ((0, 0), (0, padding))).astype(np.float32)


def resample(signal: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Resample `signal [leads, samples]` from `source_rate` to `target_rate` Hz along the last axis.

    `resample_poly` applies a Kaiser-windowed low-pass FIR at the lower of the two Nyquist rates before
    decimating, so down-sampling does not alias. Returns `[leads, ceil(samples * target_rate / source_rate)]`
    float64 (the input itself when the rates agree).
    """
    ratio = (Fraction(target_rate) / Fraction(source_rate)).limit_denominator(MAX_RESAMPLING_DENOMINATOR)
    if ratio == 1:
        return signal
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)


def _as_batch(ecgs) -> list:
    if isinstance(ecgs, (str, os.PathLike, wfdb.Record)):
        return [ecgs]
    if isinstance(ecgs, (np.ndarray, torch.Tensor)):
        if ecgs.ndim == 2:
            return [ecgs]
        if ecgs.ndim == 3:
            return list(ecgs)
        raise ValueError(
            f"ECG arrays must be [leads, samples] or [batch, leads, samples], got shape {tuple(ecgs.shape)}"
        )
    if isinstance(ecgs, Sequence) and len(ecgs) > 0:
        return list(ecgs)
    raise ValueError(
        "ecgs must be a WFDB record path, a wfdb.Record, an array [leads, samples] or a non-empty list of them, "
        f"got {type(ecgs).__name__}"
    )


def _load(item, position: str, sampling_rate, lead_names, output_lead_names: Sequence[str]):
    """One input -> (`[leads, samples]` float64, its sampling rate, its lead names, a name for error messages).

    An array without `lead_names` is taken to hold `output_lead_names`, in order.
    """
    if isinstance(item, (str, os.PathLike)):
        if ecg_file_format(item):  # a hospital export (DICOM waveform, MUSE XML) carries rate, leads and units too
            recording = read_ecg_file(item)
            return recording.signal, recording.sampling_rate, recording.lead_names, f"{recording.source} ({position})"
        item = read_wfdb_record(item)
    if isinstance(item, wfdb.Record):
        source = f"WFDB record {item.record_name!r} ({position})"
        if item.p_signal is not None:
            physical = item.p_signal
        elif item.d_signal is not None:
            physical = item.dac(return_res=64)
        else:
            raise ValueError(f"{source} holds no signal (p_signal and d_signal are both None)")
        return np.asarray(physical, dtype=np.float64).T, item.fs, list(item.sig_name or []), source
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    if not isinstance(item, np.ndarray):
        raise ValueError(
            f"{position} is a {type(item).__name__}; expected a WFDB record path, a wfdb.Record or an array"
        )
    if item.ndim != 2 or 0 in item.shape:
        raise ValueError(f"{position} must be a non-empty array [leads, samples], got shape {item.shape}")
    if lead_names is None:
        num_leads = len(output_lead_names)
        if item.shape[0] != num_leads:
            hint = " (transposed? pass [leads, samples])" if item.shape[1] == num_leads else ""
            raise ValueError(
                f"{position} has shape {item.shape}{hint}; without lead_names an array must hold exactly "
                f"{num_leads} leads in the order {', '.join(output_lead_names)}"
            )
        lead_names = output_lead_names
    return item.astype(np.float64), sampling_rate, list(lead_names), position


def read_wfdb_record(path: str | os.PathLike) -> wfdb.Record:
    """Read a WFDB record (physical units: `p_signal [samples, signals]`) from its path, e.g. `ecg/s0010_re` or
    `ecg/s0010_re.hea`; errors name the header file."""
    path = Path(path)
    record_path = path.with_suffix("") if path.suffix.lower() in WFDB_SUFFIXES else path
    header = record_path.parent / f"{record_path.name}.hea"
    if not header.is_file():
        raise FileNotFoundError(f"WFDB header not found: {header}")
    try:
        return wfdb.rdrecord(str(record_path))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"a signal file of WFDB record {header} is missing: {error}") from error
    # wfdb reports a corrupt header or signal file with whatever its parser hits (ValueError, IndexError,
    # struct/regex errors...), so any failure here means "this record is unreadable".
    except Exception as error:
        raise ValueError(f"could not read WFDB record {header}: {type(error).__name__}: {error}") from error


def _checked_sampling_rate(rate, source: str) -> float:
    if rate is None:
        raise ValueError(f"{source} has an unknown sampling rate; pass sampling_rate= (Hz) with arrays")
    rate = float(rate)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{source} has sampling rate {rate} Hz; expected a positive number of Hz")
    return rate


def _select_leads(signal: np.ndarray, names: Sequence[str], wanted: Sequence[str], source: str) -> np.ndarray:
    """Rows of `signal` for `wanted` leads, matched case-insensitively by name, in `wanted`'s order."""
    if len(names) != signal.shape[0]:
        raise ValueError(f"{source} has {signal.shape[0]} signals but {len(names)} lead names ({names})")
    row_of = {}
    for row, name in enumerate(names):
        key = str(name).strip().lower()
        if key in row_of:
            raise ValueError(f"{source} has lead {name!r} more than once (lead names: {names})")
        row_of[key] = row
    missing = [lead for lead in wanted if lead.lower() not in row_of]
    if missing:
        raise ValueError(f"{source} is missing standard lead(s) {', '.join(missing)} (it has: {', '.join(names)})")
    return signal[[row_of[lead.lower()] for lead in wanted]]


def _fill_missing(signal: np.ndarray, lead_names: Sequence[str], max_nan_fraction: float, source: str) -> np.ndarray:
    """Linearly interpolate non-finite samples within each lead; refuse leads with too few valid samples."""
    missing = ~np.isfinite(signal)
    if not missing.any():
        return signal
    signal = signal.copy()
    time = np.arange(signal.shape[1])
    for lead, name in enumerate(lead_names):
        lead_missing = missing[lead]
        if lead_missing.all():
            raise ValueError(f"{source}: lead {name} has no valid sample (all NaN) in the first window")
        if lead_missing.mean() > max_nan_fraction:
            raise ValueError(
                f"{source}: lead {name} is {lead_missing.mean():.0%} NaN in the first window; at most "
                f"{max_nan_fraction:.0%} is interpolated"
            )
        if lead_missing.any():
            signal[lead, lead_missing] = np.interp(time[lead_missing], time[~lead_missing], signal[lead, ~lead_missing])
    return signal
