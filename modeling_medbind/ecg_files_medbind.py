"""Hospital ECG exports for MedBind: DICOM 12-lead waveforms and GE MUSE XML, read into millivolts with their rate and
lead names, so that [`MedBindECGFeatureExtractor`] takes them as it takes a WFDB record.

- **DICOM** (PS3.3 A.34, Waveform IODs): `Dataset.waveform_array` applies each channel's sensitivity, correction
  factor and baseline; the unit comes from the channel's Channel Sensitivity Units (UCUM `uV`, `mV`, `V`), the lead
  name from its Channel Source (CID 3001, "Lead I", "Lead aVR", ...), the rate from Sampling Frequency.
- **GE MUSE XML** (`<RestingECG>`): the rhythm `<Waveform>`'s `<LeadData>` hold each lead as base64 little-endian
  16-bit samples with `<LeadAmplitudeUnitsPerBit>` and `<LeadAmplitudeUnits>`; the rate is `SampleBase *
  10**SampleExponent`. MUSE stores 8 leads (I, II, V1-V6): the limb leads III, aVR, aVL and aVF are derived from I
  and II (Einthoven's and Goldberger's equations, `derive_limb_leads`).

pydicom is not among the packages a Hub folder's code may import at its top, so it is imported where a DICOM is read.
"""

from __future__ import annotations

import base64
import binascii
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_processing_medbind import DICOM_SUFFIXES, is_dicom

MUSE_SUFFIXES = (".xml",)
# Millivolts per unit, by the unit names DICOM (UCUM codes) and MUSE write.
MILLIVOLTS_PER_UNIT = {"uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolts": 1e-3, "mv": 1.0, "millivolts": 1.0, "v": 1e3}
# DICOM Waveform SOP classes that hold ECGs: 12-lead, general and ambulatory ECG (PS3.4 B.5).
ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform Storage",
}
# Prefixes of DICOM channel source names around the lead's own name ("Lead aVR", MDC's "MDC_ECG_LEAD_aVR").
LEAD_NAME_PREFIXES = ("mdc_ecg_lead_", "lead ")


@dataclass
class ECGRecording:
    """An ECG read from a file: `signal [leads, samples]` in millivolts, `sampling_rate` in Hz, `lead_names` of the
    rows, and `source`, the file as error messages name it."""

    signal: np.ndarray
    sampling_rate: float
    lead_names: list[str]
    source: str


def ecg_file_format(path: str | os.PathLike) -> str | None:
    """`"dicom"` or `"muse"` for a hospital ECG export (by suffix, or the DICOM marker of an existing file); `None`
    for anything else, such as a WFDB record path."""
    path = Path(path)
    if path.suffix.lower() in MUSE_SUFFIXES:
        return "muse"
    if path.suffix.lower() in DICOM_SUFFIXES or (path.is_file() and is_dicom(path)):
        return "dicom"
    return None


def read_ecg_file(path: str | os.PathLike) -> ECGRecording:
    """
    Read a DICOM waveform or MUSE XML ECG (see the module docstring), every lead in millivolts; for MUSE, with the
    derived limb leads added.

    Raises:
        ValueError: naming the file: not such an ECG file (a DICOM radiograph, not a `<RestingECG>`), a missing
            lead, an unknown unit, a truncated waveform, or a missing rate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ECG file not found: {path}")
    kind = ecg_file_format(path)
    if kind == "dicom":
        return read_dicom_ecg(path)
    if kind == "muse":
        return read_muse_ecg(path)
    raise ValueError(f"{path} is neither a DICOM waveform (.dcm) nor a MUSE XML (.xml) ECG")


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """The limb leads a cart computes from leads I and II, which it records (the three limb electrodes span a plane):

        III = II - I  (Einthoven),  aVR = -(I + II) / 2,  aVL = I - II / 2,  aVF = II - I / 2  (Goldberger).
    """
    return {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }


def read_dicom_ecg(path: Path) -> ECGRecording:
    """A DICOM ECG waveform's first original multiplex group, in millivolts (see [`read_ecg_file`])."""
    try:
        import pydicom
    except ImportError as error:
        raise ImportError(f"reading the DICOM file {path} needs pydicom: pip install pydicom") from error
    source = f"DICOM ECG {path}"
    try:
        dataset = pydicom.dcmread(path)
    # pydicom reports a corrupt file in many error types.
    except Exception as error:
        raise ValueError(f"could not read DICOM file {path}: {type(error).__name__}: {error}") from error
    sop_class = str(dataset.get("SOPClassUID", ""))
    if "WaveformSequence" not in dataset or sop_class not in ECG_SOP_CLASSES:
        described = f"SOP class {sop_class or 'unknown'}, modality {dataset.get('Modality', 'unknown')}"
        raise ValueError(
            f"{path} is a DICOM file but not an ECG waveform ({described}); expected one of: "
            f"{', '.join(ECG_SOP_CLASSES.values())}"
        )
    groups = list(dataset.WaveformSequence)
    index = next((i for i, group in enumerate(groups) if group.get("WaveformOriginality") == "ORIGINAL"), 0)
    group = groups[index]
    channels, samples = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    expected = channels * samples * int(group.WaveformBitsAllocated) // 8
    if len(group.WaveformData) < expected:
        raise ValueError(
            f"{source}: the waveform is truncated: {len(group.WaveformData)} bytes of Waveform Data, but "
            f"{channels} channels x {samples} samples need {expected}"
        )
    rate = group.get("SamplingFrequency")
    if rate is None:
        raise ValueError(f"{source} has no Sampling Frequency (003A,001A)")
    definitions = list(group.ChannelDefinitionSequence)
    if len(definitions) != channels:
        raise ValueError(f"{source} defines {len(definitions)} channels but stores {channels}")
    names = [_dicom_lead_name(channel, number, source) for number, channel in enumerate(definitions, start=1)]
    scale = np.array([_dicom_millivolts_per_unit(channel, name, source) for channel, name in zip(definitions, names)])
    signal = dataset.waveform_array(index).T * scale[:, None]
    return ECGRecording(signal.astype(np.float64), float(rate), names, source)


def _dicom_lead_name(channel, number: int, source: str) -> str:
    """The lead name of a DICOM channel: its Channel Source's code meaning without "Lead ", else its label."""
    sources = channel.get("ChannelSourceSequence") or []
    name = str(sources[0].get("CodeMeaning", "")) if sources else ""
    name = name or str(channel.get("ChannelLabel", ""))
    if not name:
        raise ValueError(f"{source}: channel {number} names no lead (no Channel Source code meaning or label)")
    for prefix in LEAD_NAME_PREFIXES:
        if name.lower().startswith(prefix):
            return name[len(prefix) :].strip()
    return name.strip()


def _dicom_millivolts_per_unit(channel, lead: str, source: str) -> float:
    """Millivolts per unit of `waveform_array`'s values for one channel, from its Channel Sensitivity Units."""
    units = channel.get("ChannelSensitivityUnitsSequence") or []
    if "ChannelSensitivity" not in channel or not units:
        raise ValueError(
            f"{source}: lead {lead} has no Channel Sensitivity and units, so its samples have no physical unit"
        )
    return _millivolts_per_unit(str(units[0].get("CodeValue", "")), lead, source)


def _millivolts_per_unit(unit: str, lead: str, source: str) -> float:
    try:
        return MILLIVOLTS_PER_UNIT[unit.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{source}: lead {lead} is in unknown unit {unit!r}; expected one of uV, mV, V (or MUSE's MICROVOLTS)"
        ) from None


def read_muse_ecg(path: Path) -> ECGRecording:
    """A GE MUSE XML ECG's rhythm waveform, in millivolts, with III, aVR, aVL, aVF derived where not stored (see
    [`read_ecg_file`])."""
    source = f"MUSE ECG {path}"
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"could not parse the XML of {path}: {error}") from error
    if root.tag != "RestingECG":
        raise ValueError(f"{path} is not a MUSE XML ECG: its root element is <{root.tag}>, not <RestingECG>")
    waveform = next((w for w in root.iter("Waveform") if w.findtext("WaveformType", "").strip() == "Rhythm"), None)
    if waveform is None:
        raise ValueError(f"{source} holds no rhythm <Waveform> (WaveformType Rhythm)")
    try:
        rate = float(waveform.findtext("SampleBase")) * 10 ** int(waveform.findtext("SampleExponent", "0"))
    except (TypeError, ValueError):
        raise ValueError(f"{source}: the rhythm waveform has no numeric <SampleBase> (its sampling rate)") from None
    leads = dict(_muse_lead(lead, source) for lead in waveform.iter("LeadData"))
    missing = [name for name in ("I", "II") if name not in leads]
    if missing:
        raise ValueError(
            f"{source} is missing lead(s) {', '.join(missing)}, from which the other limb leads are derived "
            f"(it has: {', '.join(leads) or 'none'})"
        )
    lengths = {len(values) for values in leads.values()}
    if len(lengths) > 1:
        raise ValueError(f"{source}: its leads have different lengths ({sorted(lengths)} samples)")
    leads |= {name: values for name, values in derive_limb_leads(leads["I"], leads["II"]).items() if name not in leads}
    return ECGRecording(np.stack(list(leads.values())), rate, list(leads), source)


def _muse_lead(lead, source: str) -> tuple[str, np.ndarray]:
    """One `<LeadData>`: (its `LeadID`, its samples in millivolts)."""
    name = lead.findtext("LeadID", "").strip()
    if not name:
        raise ValueError(f"{source}: a <LeadData> has no <LeadID>")
    try:
        data = base64.b64decode(lead.findtext("WaveFormData", ""), validate=False)
        per_bit = float(lead.findtext("LeadAmplitudeUnitsPerBit"))
        count = int(lead.findtext("LeadSampleCountTotal"))
    except (binascii.Error, TypeError, ValueError) as error:
        raise ValueError(
            f"{source}: lead {name} lacks valid <WaveFormData>, <LeadAmplitudeUnitsPerBit> or "
            f"<LeadSampleCountTotal> ({error})"
        ) from error
    if len(data) < 2 * count:
        raise ValueError(
            f"{source}: lead {name} is truncated: {len(data) // 2} samples of the {count} <LeadSampleCountTotal> says"
        )
    scale = per_bit * _millivolts_per_unit(lead.findtext("LeadAmplitudeUnits", ""), name, source)
    return name, np.frombuffer(data[: 2 * count], dtype="<i2").astype(np.float64) * scale
