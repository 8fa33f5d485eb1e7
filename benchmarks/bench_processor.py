"""Throughput of MedBind's input processing on one CPU core.

Measures what a dataloader worker spends per sample:
- ECG: a 10 s, 12-lead, 500 Hz WFDB record (MIMIC-IV-ECG's format, written with `wfdb.wrsamp`) -> `[12, 1000]`;
- CXR: a 2500 x 3000 16-bit grayscale PNG (a DICOM-derived radiograph's size and depth) -> `[3, 224, 224]`,
  split into PNG decoding and the processor's own work.

Run: `python benchmarks/bench_processor.py [--records 200] [--images 10] [--step-seconds S] [--json out.json]`.
With `--step-seconds` (the time of one training step at `--batch-size`), it also prints the share of that step one
core would spend preparing a batch of each modality.
"""

from __future__ import annotations

import os

# Before numpy/scipy/torch load: their thread pools read these once, and the benchmark is about one core.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import wfdb  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from modeling_medbind import MedBindECGFeatureExtractor, MedBindImageProcessor  # noqa: E402
from modeling_medbind.feature_extraction_medbind import CANONICAL_LEAD_NAMES  # noqa: E402


def write_ecg_record(directory: Path, sampling_rate: int = 500, seconds: int = 10) -> Path:
    """A synthetic 12-lead record (a 1.2 Hz "beat" train plus noise) in MIMIC-IV-ECG's WFDB layout."""
    rng = np.random.default_rng(0)
    time_s = np.arange(sampling_rate * seconds) / sampling_rate
    beats = np.sin(2 * np.pi * 1.2 * time_s) ** 15
    signal = beats[:, None] * rng.uniform(0.5, 2.0, 12) + 0.02 * rng.standard_normal((time_s.size, 12))
    wfdb.wrsamp(
        "bench500",
        fs=sampling_rate,
        units=["mV"] * 12,
        sig_name=list(CANONICAL_LEAD_NAMES),
        p_signal=signal,
        fmt=["16"] * 12,
        write_dir=str(directory),
    )
    return directory / "bench500"


def write_16_bit_radiograph(directory: Path, height: int = 2500, width: int = 3000) -> Path:
    """A smooth 16-bit image with noise (random noise alone would make PNG decoding unrealistically slow)."""
    rows, columns = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    smooth = 20000 + 30000 * np.sin(3 * rows) * np.cos(2 * columns) ** 2
    noise = np.random.default_rng(0).normal(0, 300, (height, width))
    path = directory / "radiograph16.png"
    Image.fromarray(np.clip(smooth + noise, 0, 65535).astype(np.uint16)).save(path)
    return path


def per_second(function: Callable[[], object], repeats: int, description: str) -> float:
    """Calls of `function` per second over `repeats` timed calls (after one untimed warm-up call)."""
    function()
    start = time.perf_counter()
    for _ in tqdm(range(repeats), desc=description, leave=False):
        function()
    return repeats / (time.perf_counter() - start)


def decode_png(path: Path) -> None:
    """Decode a PNG fully (Pillow decodes lazily), to time decoding alone."""
    with Image.open(path) as image:
        image.load()


def main() -> None:
    """Parse arguments, run the measurements, print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="ECG records to time")
    parser.add_argument("--images", type=int, default=10, help="radiographs to time")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (the paper's 128)")
    parser.add_argument("--step-seconds", type=float, default=None, help="time of one training step, if known")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(1)
    extractor, image_processor = MedBindECGFeatureExtractor(), MedBindImageProcessor()
    with tempfile.TemporaryDirectory() as directory:
        record = write_ecg_record(Path(directory))
        png = write_16_bit_radiograph(Path(directory))
        with Image.open(png) as image:
            image.load()
            decoded = image.copy()
        results = {
            "ecg_records_per_s": per_second(lambda: extractor(record, return_tensors="pt"), args.records, "ECG"),
            "images_per_s": per_second(lambda: image_processor(png, return_tensors="pt"), args.images, "CXR"),
            "png_decodes_per_s": per_second(lambda: decode_png(png), args.images, "PNG decode"),
            "decoded_images_per_s": per_second(
                lambda: image_processor(decoded, return_tensors="pt"), args.images, "CXR (decoded)"
            ),
        }
    results["batch_size"] = args.batch_size
    rows = [
        ("ECG 500 Hz WFDB record -> [12, 1000]", results["ecg_records_per_s"]),
        ("CXR 2500x3000 16-bit PNG -> [3, 224, 224]", results["images_per_s"]),
        ("  of which PNG decoding alone", results["png_decodes_per_s"]),
        ("  of which processing a decoded image", results["decoded_images_per_s"]),
    ]
    print(f"{'one CPU core':<44}{'items/s':>10}{f'ms/batch of {args.batch_size}':>20}")
    for name, rate in rows:
        print(f"{name:<44}{rate:>10.1f}{1000 * args.batch_size / rate:>20.0f}")
    if args.step_seconds is not None:
        results["step_seconds"] = args.step_seconds
        for modality, key in (("ecg", "ecg_records_per_s"), ("cxr", "images_per_s")):
            share = args.batch_size / results[key] / args.step_seconds
            results[f"{modality}_core_seconds_per_step_share"] = share
            print(f"{modality.upper()} batch on one core = {share:.1f}x a {args.step_seconds} s training step")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
