"""Throughput of MedBind's input processing on one CPU core: what a dataloader worker spends per sample.

- ECG: a 10 s, 12-lead, 500 Hz WFDB record (MIMIC-IV-ECG's format, written with `wfdb.wrsamp`) -> `[12, 1000]`.
- CXR from the raw download: a 2500 x 3000 16-bit grayscale PNG (a DICOM-derived radiograph's size and depth) and an
  8-bit JPEG of the same size (MIMIC-CXR-JPG's) -> `[3, 224, 224]`, split into decoding and the processor's own work.
- CXR from a built dataset (the goal, issue 13.7: >= 100 images/s per core): the same radiographs stored as the CXR
  builders store them (`medbind_processing.radiographs.stored_radiograph`: shortest side 512 by default, bit depth
  kept), saved with `save_to_disk` and read back; each call reads one row (decoding the stored image) and processes it.
  `--dataset DIR` times the rows of a dataset you built instead (e.g. `python -m medbind_processing.mimic_cxr ...`).

Run: `python benchmarks/bench_processor.py [--records 200] [--images 10] [--built-images 200] [--dataset DIR]
[--step-seconds S] [--json out.json]`. With `--step-seconds` (the time of one training step at `--batch-size`), it
also prints how many cores keep up with that step for each input.
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
from itertools import cycle  # noqa: E402
from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import wfdb  # noqa: E402
from medbind_processing.radiographs import DEFAULT_SHORTEST_EDGE, stored_radiograph  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from modeling_medbind import MedBindECGFeatureExtractor, MedBindImageProcessor  # noqa: E402
from modeling_medbind.feature_extraction_medbind import CANONICAL_LEAD_NAMES  # noqa: E402

GOAL_IMAGES_PER_S = 100  # per core, from a built dataset (issue 13.7)


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


def write_radiograph(directory: Path, bits: int, height: int = 2500, width: int = 3000) -> Path:
    """A smooth image with noise (random noise alone would make decoding unrealistically slow), full
    radiograph size: a 16-bit grey PNG (a DICOM export) for `bits=16`, else an 8-bit grey JPEG (MIMIC-CXR-JPG)."""
    rows, columns = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    smooth = 0.3 + 0.45 * np.sin(3 * rows) * np.cos(2 * columns) ** 2
    noise = np.random.default_rng(0).normal(0, 0.005, (height, width))
    level = np.clip(smooth + noise, 0, 1)
    if bits == 16:
        path = directory / "radiograph16.png"
        Image.fromarray((level * 65535).astype(np.uint16)).save(path)
    else:
        path = directory / "radiograph8.jpg"
        Image.fromarray((level * 255).astype(np.uint8)).save(path, quality=95)
    return path


def build_cxr_dataset(sources: dict[str, Path], directory: Path, shortest_edge: int) -> datasets.Dataset:
    """The radiographs stored as the CXR builders store them (`image`, with their key of `sources` as
    `source`), saved to disk and loaded back (memory-mapped)."""
    features = datasets.Features({"image": datasets.Image(), "source": datasets.Value("string")})
    rows = {
        "image": [stored_radiograph(path, shortest_edge) for path in sources.values()],
        "source": list(sources),
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(directory / "built")
    return datasets.load_from_disk(directory / "built")


def per_second(function: Callable[[], object], repeats: int, description: str) -> float:
    """Calls of `function` per second over `repeats` timed calls (after one untimed warm-up call)."""
    function()
    start = time.perf_counter()
    for _ in tqdm(range(repeats), desc=description, leave=False):
        function()
    return repeats / (time.perf_counter() - start)


def decode(path: Path) -> None:
    """Decode an image file fully (Pillow decodes lazily), to time decoding alone."""
    with Image.open(path) as image:
        image.load()


def built_rate(
    dataset: datasets.Dataset, indices: list[int], processor: MedBindImageProcessor, repeats: int, name: str
) -> float:
    """Rows per second from reading a row of `dataset` to its `[3, H, W]` tensor, on one core."""
    # Rows read (and their images decoded) one at a time, over and over, as a loader worker reads them.
    rows = (dataset[index] for index in cycle(indices))
    return per_second(lambda: processor(next(rows)["image"], return_tensors="pt"), repeats, name)


def measure(args: argparse.Namespace) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Every measurement: the rates by key (items per second on one core) and the table's rows as `(label, key)`."""
    torch.set_num_threads(1)
    extractor, image_processor = MedBindECGFeatureExtractor(), MedBindImageProcessor()
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        record = write_ecg_record(directory)
        results["ecg_records_per_s"] = per_second(lambda: extractor(record, return_tensors="pt"), args.records, "ECG")
        rows.append(("ECG 500 Hz WFDB record -> [12, 1000]", "ecg_records_per_s"))

        sources = {"png16": write_radiograph(directory, 16), "jpeg8": write_radiograph(directory, 8)}
        labels = {"png16": "2500x3000 16-bit PNG", "jpeg8": "2500x3000 8-bit JPEG"}
        for name, path in sources.items():
            with Image.open(path) as image:
                image.load()
                decoded = image.copy()
            results[f"raw_{name}_images_per_s"] = per_second(
                lambda: image_processor(path, return_tensors="pt"), args.images, f"CXR {name}"
            )
            results[f"raw_{name}_decodes_per_s"] = per_second(lambda: decode(path), args.images, f"decode {name}")
            results[f"decoded_{name}_images_per_s"] = per_second(
                lambda: image_processor(decoded, return_tensors="pt"), args.images, f"process {name}"
            )
            rows += [
                (f"CXR {labels[name]} file -> [3, 224, 224]", f"raw_{name}_images_per_s"),
                ("  of which decoding alone", f"raw_{name}_decodes_per_s"),
                ("  of which processing the decoded image", f"decoded_{name}_images_per_s"),
            ]

        if args.dataset is None:
            built = build_cxr_dataset(sources, directory, args.shortest_edge)
            for index, name in enumerate(built["source"]):
                key = f"built_{name}_images_per_s"
                size = built[index]["image"].size
                results[key] = built_rate(built, [index], image_processor, args.built_images, f"built {name}")
                rows.append((f"CXR built row ({labels[name]} stored at {size[0]}x{size[1]}) -> tensor", key))
        else:
            built = datasets.load_from_disk(args.dataset)
            built = built[args.split] if isinstance(built, datasets.DatasetDict) else built
            indices = list(range(min(len(built), args.built_images)))
            results["built_images_per_s"] = built_rate(built, indices, image_processor, args.built_images, "built")
            rows.append((f"CXR rows of {args.dataset} ({args.split}) -> tensor", "built_images_per_s"))
    return results, rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse `argv` (default: the command line), run the measurements, print a table and optionally write JSON;
    returns the rates by key (items per second on one core), and the settings they were measured with."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="ECG records to time")
    parser.add_argument("--images", type=int, default=10, help="full-size radiographs to time")
    parser.add_argument("--built-images", type=int, default=200, help="rows of the built dataset to time")
    parser.add_argument(
        "--shortest-edge", type=int, default=DEFAULT_SHORTEST_EDGE, help="shorter side of the stored radiographs"
    )
    parser.add_argument("--dataset", type=Path, default=None, help="time the rows of this built CXR dataset instead")
    parser.add_argument("--split", default="train", help="the split of --dataset, if it is a DatasetDict")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (the paper's 128)")
    parser.add_argument("--step-seconds", type=float, default=None, help="time of one training step, if known")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    results, rows = measure(args)
    results["batch_size"] = args.batch_size
    print(f"{'one CPU core':<66}{'items/s':>10}{f'ms/batch of {args.batch_size}':>20}")
    for name, key in rows:
        rate = results[key]
        goal = f"  (goal >= {GOAL_IMAGES_PER_S})" if key.startswith("built") else ""
        print(f"{name:<66}{rate:>10.1f}{1000 * args.batch_size / rate:>20.0f}{goal}")
    if args.step_seconds is not None:
        results["step_seconds"] = args.step_seconds
        needed = args.batch_size / args.step_seconds
        print(f"A {args.step_seconds} s step at batch {args.batch_size} takes {needed:.0f} samples/s of each modality:")
        for name, key in rows:
            results[f"{key}_cores_per_step"] = needed / results[key]
            print(f"  {name.strip():<64}{needed / results[key]:>8.1f} cores")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
