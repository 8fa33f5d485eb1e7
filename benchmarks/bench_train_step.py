"""
Time one MedBind training step, and each tower alone, for the named presets and ECG patch sizes.

A training step is forward + backward + AdamW over a batch of `batch_size` CXR-report pairs and `batch_size`
ECG-report pairs, every CXR paired with the ECG of the same row (so EMCL runs too), reports at `text_length` tokens.
The step runs the text tower once over both report sets (2 x batch rows); each tower is then timed alone, forward + backward
through its projection, so the table shows where the step's time goes. Times are the median over `repeats` calls
after `warmup` untimed ones.

Usage:

    python benchmarks/bench_train_step.py                                   # tiny + paper, patch 1 and 10, CPU
    python benchmarks/bench_train_step.py --presets paper --ecg_patch_sizes 10 --device cuda --json out.json
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from modeling_medbind import MedBindConfig, MedBindModel
from modeling_medbind.configuration_medbind import PRESETS


# What is timed, in table order: the whole step, then each tower through its projection.
WORKLOADS = {
    "train_step": "train step: forward + backward + AdamW",
    "cxr": "CXR tower + projection: forward + backward",
    "text": "text tower + projection: forward + backward",
    "ecg": "ECG tower + projection: forward + backward",
}
# Each tower: the `MedBindModel` method that embeds it and the batch entries that method takes.
TOWER_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cxr": ("get_cxr_features", ("pixel_values",)),
    "text": ("get_text_features", ("input_ids", "attention_mask")),
    "ecg": ("get_ecg_features", ("ecg_values",)),
}


def default_threads() -> int:
    """The number of CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class BenchmarkArguments:
    """What to time and how; parsed from the command line by `HfArgumentParser`."""

    presets: list[str] = field(
        default_factory=lambda: ["tiny", "paper"], metadata={"help": f"MedBind presets, among {sorted(PRESETS)}."}
    )
    ecg_patch_sizes: list[int] = field(
        default_factory=lambda: [1, 10],
        metadata={"help": "ECG time points per token (1 = the paper's one token per step); each must divide 1000."},
    )
    batch_size: int = field(default=8, metadata={"help": "CXR-report pairs and ECG-report pairs per step."})
    text_length: int = field(default=128, metadata={"help": "Tokens per report."})
    warmup: int = field(default=2, metadata={"help": "Untimed calls before timing (allocator, AdamW state)."})
    repeats: int = field(default=5, metadata={"help": "Timed calls; the table reports their median."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: every core)."})
    device: str = field(default="cpu", metadata={"help": "Where to run: cpu, cuda, cuda:1, ..."})
    json_path: str | None = field(
        default=None, metadata={"aliases": ["--json"], "help": "Also write the measurements to this JSON file."}
    )

    def __post_init__(self):
        unknown = sorted(set(self.presets) - set(PRESETS))
        if unknown:
            raise ValueError(f"--presets: unknown preset(s) {unknown}; choose among {sorted(PRESETS)}")
        for name in ("batch_size", "text_length", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is None:
            self.threads = default_threads()
        device_type = torch.device(self.device).type
        accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
        if device_type != "cpu" and (accelerator is None or accelerator.type != device_type):
            raise ValueError(f"--device {self.device}: no {device_type} accelerator is available on this machine")


@dataclass
class Measurement:
    """
    One timed workload.

    Args:
        preset: MedBind preset name.
        workload: a key of `WORKLOADS` (`"train_step"`, `"cxr"`, `"text"`, `"ecg"`).
        ecg_patch_size: patch size of the ECG tower, None for a workload that does not run it.
        ecg_tokens: tokens the ECG tower attends over (class token included), None likewise.
        parameters: parameters the workload runs through.
        times_s: wall-clock seconds of each timed call.
        median_s: their median.
    """

    preset: str
    workload: str
    ecg_patch_size: int | None
    ecg_tokens: int | None
    parameters: int
    times_s: list[float]
    median_s: float


def random_batch(config: MedBindConfig, batch_size: int, text_length: int, device: torch.device) -> dict:
    """
    A training batch of random inputs with the shapes the processor produces.

    Args:
        config: the model's config (image size, ECG shape, vocabulary).
        batch_size: rows of each modality; row i of the CXRs is paired with row i of the ECGs, so EMCL runs.
        text_length: tokens per report, all attended.
        device: where the tensors live.

    Returns:
        `MedBindModel.forward` keyword arguments, `return_loss=True` included.

    Raises:
        ValueError: when `text_length` exceeds the text tower's `max_position_embeddings`.
    """
    text_config, ecg_config, cxr_config = config.text_config, config.ecg_config, config.cxr_config
    if text_length > text_config.max_position_embeddings:
        raise ValueError(
            f"--text_length {text_length} exceeds text_config.max_position_embeddings="
            f"{text_config.max_position_embeddings} of this preset"
        )
    image_shape = (batch_size, cxr_config.num_channels, cxr_config.image_size, cxr_config.image_size)
    report_shape = (2 * batch_size, text_length)  # the CXRs' reports, then the ECGs'

    rows = torch.arange(batch_size, device=device)
    return {
        "pixel_values": torch.randn(image_shape, device=device),
        "ecg_values": torch.randn(batch_size, ecg_config.num_leads, ecg_config.num_samples, device=device),
        "input_ids": torch.randint(0, text_config.vocab_size, report_shape, device=device),
        "attention_mask": torch.ones(report_shape, dtype=torch.long, device=device),
        "pair_index": torch.stack([rows, rows], dim=1),
        "return_loss": True,
    }


def workload_loss(model: MedBindModel, batch: dict, workload: str) -> Callable[[], torch.Tensor]:
    """
    A callable returning the scalar whose backward pass a workload times.

    Args:
        model: the model.
        batch: a `random_batch`.
        workload: `"train_step"` for the MedBind loss of the whole batch, or a tower (`"cxr"`, `"text"`, `"ecg"`) for
            the sum of its `[B, projection_dim]` embeddings, which sends a gradient through the tower alone.
    """
    if workload == "train_step":
        return lambda: model(**batch).loss
    method, keys = TOWER_INPUTS[workload]
    embed = getattr(model, method)
    return lambda: embed(*(batch[key] for key in keys)).sum()


def workload_parameters(model: MedBindModel, workload: str) -> int:
    """Parameters a workload runs through: the whole model, or a tower and its projection."""
    if workload == "train_step":
        return model.num_parameters()
    modules = (getattr(model, f"{workload}_model"), getattr(model, f"{workload}_projection"))
    return sum(parameter.numel() for module in modules for parameter in module.parameters())


def training_step(
    model: MedBindModel, loss: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer | None = None
) -> Callable[[], None]:
    """
    A callable running one step: forward (`loss()`), backward, and `optimizer.step()` when an optimizer is given.

    Gradients are dropped first so that every call costs the same (accumulating into existing ones would not).
    """

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss().backward()
        if optimizer is not None:
            optimizer.step()

    return step


def synchronize(device: torch.device) -> None:
    """Wait for queued accelerator work, so that a clock read after it counts that work (a no-op on CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def time_calls(
    function: Callable[[], None], warmup: int, repeats: int, device: torch.device, progress: tqdm
) -> list[float]:
    """
    Call `function` `warmup` times untimed, then `repeats` times timed, advancing `progress` once per call.

    Returns:
        the wall-clock seconds of each timed call.
    """
    for _ in range(warmup):
        function()
        progress.update()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
        progress.update()
    return times


def run_benchmark(args: BenchmarkArguments) -> list[Measurement]:
    """
    Time the training step and the towers for every preset and ECG patch size in `args`.

    The CXR and text towers do not depend on the ECG patch size, so they are timed once per preset (on the first
    patch size's model). torch's CPU thread count is set to `args.threads` for the run and restored afterwards.

    Returns:
        the measurements, per preset in `WORKLOADS` order, per workload in `args.ecg_patch_sizes` order.

    Raises:
        ValueError: for a patch size that does not divide the ECG length, or a text length the preset cannot embed.
    """
    device = torch.device(args.device)
    calls_per_preset = (2 * len(args.ecg_patch_sizes) + 2) * (args.warmup + args.repeats)
    progress = tqdm(total=len(args.presets) * calls_per_preset, unit="call")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    measurements = []
    try:
        for preset in args.presets:
            for index, patch_size in enumerate(args.ecg_patch_sizes):
                config = MedBindConfig.from_preset(preset, ecg_config={"patch_size": patch_size})
                model = MedBindModel(config).to(device).train()
                batch = random_batch(config, args.batch_size, args.text_length, device)
                # The paper's optimiser (method.md: AdamW, learning rate 4e-4, weight decay 0.1).
                optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
                workloads = list(WORKLOADS) if index == 0 else ["train_step", "ecg"]
                for workload in workloads:
                    progress.set_description(f"{preset}, ECG patch {patch_size}: {workload}")
                    step = training_step(
                        model, workload_loss(model, batch, workload), optimizer if workload == "train_step" else None
                    )
                    times = time_calls(step, args.warmup, args.repeats, device, progress)
                    runs_ecg = workload in ("train_step", "ecg")
                    measurements.append(
                        Measurement(
                            preset=preset,
                            workload=workload,
                            ecg_patch_size=patch_size if runs_ecg else None,
                            ecg_tokens=config.ecg_config.num_patches + 1 if runs_ecg else None,
                            parameters=workload_parameters(model, workload),
                            times_s=times,
                            median_s=statistics.median(times),
                        )
                    )
    finally:
        torch.set_num_threads(previous_threads)
        progress.close()
    # A stable sort keeps the patch sizes in the order given within each workload.
    order = list(WORKLOADS)
    return sorted(measurements, key=lambda row: (args.presets.index(row.preset), order.index(row.workload)))


def device_name(device: torch.device) -> str:
    """The device for the table's caption: `cpu`, or the accelerator's product name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def markdown_table(measurements: list[Measurement], args: BenchmarkArguments) -> str:
    """
    The measurements as a markdown table under a one-line caption stating the settings.

    Returns:
        the caption, a blank line and the table, one row per measurement.
    """
    lines = [
        f"MedBind training step on {device_name(torch.device(args.device))} ({args.threads} CPU threads), "
        f"batch {args.batch_size}, reports at {args.text_length} tokens; seconds, median of {args.repeats} "
        f"after {args.warmup} warm-up calls. The step runs the text tower once over 2 x batch reports (CXR and ECG reports).",
        "",
        "| preset | workload | ECG patch_size | ECG tokens | parameters | median (s) | min (s) | max (s) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in measurements:
        patch, tokens = (("-", "-") if row.ecg_patch_size is None else (row.ecg_patch_size, row.ecg_tokens))
        lines.append(
            f"| {row.preset} | {WORKLOADS[row.workload]} | {patch} | {tokens} | {row.parameters / 1e6:.2f} M "
            f"| {row.median_s:.3f} | {min(row.times_s):.3f} | {max(row.times_s):.3f} |"
        )
    return "\n".join(lines)


def write_json(measurements: list[Measurement], args: BenchmarkArguments, path: str | os.PathLike) -> None:
    """Write the settings, the torch version and every measurement (with each call's time) to `path` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": asdict(args),
        "device_name": device_name(torch.device(args.device)),
        "torch_version": torch.__version__,
        "measurements": [asdict(row) for row in measurements],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> list[Measurement]:
    """
    Parse `argv` (default: the command line) into `BenchmarkArguments`, run the benchmark, print the markdown table
    and write the JSON report when `--json` is given.

    Returns:
        the measurements.
    """
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    measurements = run_benchmark(args)
    print(markdown_table(measurements, args))
    if args.json_path is not None:
        write_json(measurements, args, args.json_path)
    return measurements


if __name__ == "__main__":
    main()
