"""Small synthetic samples several test modules build: reports, CXR and ECG datasets, a radiograph-like image; and
the loader of the benchmark scripts they test."""

import importlib.util
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
import wfdb
from PIL import Image

from modeling_medbind import CANONICAL_LEAD_NAMES, MedBindImageProcessor

# Four radiograph and ECG reports, no two alike.
REPORTS = [
    "Heart size is normal. The lungs are clear.",
    "No pleural effusion or pneumothorax. Heart size is normal.",
    "Sinus rhythm. Left ventricular hypertrophy with repolarization abnormality.",
    "Mild cardiomegaly. Small left pleural effusion.",
]


def cxr_dataset(num_rows: int, first_study: int = 100) -> datasets.Dataset:
    """`num_rows` random 64x64 radiographs (`image`, `text`, `study_id`), two alternating reports."""
    rng = np.random.default_rng(0)
    return datasets.Dataset.from_dict(
        {
            "image": [Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)) for _ in range(num_rows)],
            "text": [f"Chest radiograph {i}: heart size {'normal' if i % 2 else 'enlarged'}." for i in range(num_rows)],
            "study_id": list(range(first_study, first_study + num_rows)),
        },
        features=datasets.Features(
            {"image": datasets.Image(), "text": datasets.Value("string"), "study_id": datasets.Value("int64")}
        ),
    )


def ecg_dataset(num_rows: int, first_study: int = 500) -> datasets.Dataset:
    """`num_rows` random 12-lead 10 s ECGs at 100 Hz (`ecg`, `sampling_rate`, `text`, `study_id`)."""
    rng = np.random.default_rng(1)
    return datasets.Dataset.from_dict(
        {
            "ecg": [rng.standard_normal((12, 1000)).astype(np.float32) for _ in range(num_rows)],
            "sampling_rate": [100] * num_rows,
            "text": ["ECG presents sinus rhythm." if i % 3 else f"ECG presents sinus tachycardia {i}." for i in range(num_rows)],
            "study_id": list(range(first_study, first_study + num_rows)),
        },
        features=datasets.Features(
            {
                "ecg": datasets.Array2D((12, 1000), "float32"),
                "sampling_rate": datasets.Value("int64"),
                "text": datasets.Value("string"),
                "study_id": datasets.Value("int64"),
            }
        ),
    )


def write_record(directory: Path, name: str, signal: np.ndarray, sampling_rate: float,
                 lead_names=CANONICAL_LEAD_NAMES) -> Path:  # fmt: skip
    """Write `signal [leads, samples]` (mV, 1 uV per unit) as a format-16 WFDB record; returns its path (no suffix).

    The gain is fixed because wfdb cannot derive one for an all-NaN lead.
    """
    leads = len(lead_names)
    wfdb.wrsamp(name, fs=sampling_rate, units=["mV"] * leads, sig_name=list(lead_names), p_signal=signal.T,
                fmt=["16"] * leads, adc_gain=[1000.0] * leads, baseline=[0] * leads, write_dir=str(directory))
    return directory / name


def gradient(height: int = 60, width: int = 80) -> np.ndarray:
    """A float image in [0.1, 0.9] varying along both axes (so resizing, cropping and flipping are visible).

    The margin keeps bicubic overshoot inside [0, 1], where 8-bit results would clip it and float ones not.
    """
    rows, columns = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    return (0.1 + 0.56 * rows + 0.24 * columns).astype(np.float32)


def intensities(pixel_values: torch.Tensor, processor: MedBindImageProcessor) -> torch.Tensor:
    """Undo the normalisation: back to [0, 1] intensities."""
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    return pixel_values * std + mean


def process(processor: MedBindImageProcessor, images) -> torch.Tensor:
    return processor(images, return_tensors="pt")["pixel_values"]


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """Import `benchmarks/<name>.py` as a module (benchmarks/ is a folder of scripts, not a package)."""
    return load_script(BENCHMARKS / f"{name}.py")


def load_script(path: Path):
    """Import the script at `path` as a module named after its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module body runs.
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
