"""
Time one MedBind training step, and each tower alone, for the named presets and ECG patch sizes; count its FLOPs.

A training step is forward + backward + AdamW (fused, as the Trainer's default `adamw_torch_fused`) over a batch of
`batch_size` CXR-report pairs and `batch_size` ECG-report pairs, every CXR paired with the ECG of the same row (so
EMCL runs too), reports at `text_length` tokens. The step runs the text tower once over both report sets
(2 x batch rows); each tower is then timed alone, forward + backward through its projection, so the table shows
where the step's time goes. Times are the median over `repeats` calls after `warmup` untimed ones.

FLOPs are counted, not estimated: one extra untimed call of each workload runs under
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention; forward and backward, on the eager
model), so gradient caching's extra forward is counted too. MFU = counted FLOPs / median time / `--peak_tflops`
(the dense bf16, or fp32 / TF32, peak of the device you state). Peak memory is `torch.cuda.max_memory_allocated`
over the timed calls on a GPU; on the CPU, the process's peak resident set so far (a high-water mark of the whole
run, not of one workload).

Usage:

    python benchmarks/bench_train_step.py                                   # tiny + paper, patch 1 and 10, CPU, batch 8
    python benchmarks/bench_train_step.py --presets paper --ecg_patch_sizes 1 --device cuda --bf16 \\
        --peak_tflops 989 --json out.json                                   # batch 128 on a GPU
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from medbind_training.gradient_cache import gradient_cached_step
from medbind_training.losses import batch_loss
from torch.utils.flop_counter import FlopCounterMode
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
ACCELERATOR_BATCH_SIZE, CPU_BATCH_SIZE = 128, 8  # the paper's batch; a CPU-sized one


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
    workloads: list[str] = field(
        default_factory=lambda: list(WORKLOADS), metadata={"help": f"What to time, among {list(WORKLOADS)}."}
    )
    batch_size: int | None = field(
        default=None,
        metadata={"help": f"CXR-report and ECG-report pairs per step (default {ACCELERATOR_BATCH_SIZE} on an "
                  f"accelerator, the paper's, {CPU_BATCH_SIZE} on the CPU)."},
    )  # fmt: skip
    text_length: int = field(default=128, metadata={"help": "Tokens per report."})
    warmup: int = field(default=2, metadata={"help": "Untimed calls before timing (allocator, AdamW state, compile)."})
    repeats: int = field(default=5, metadata={"help": "Timed calls; the table reports their median."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: every core)."})
    device: str = field(default="cpu", metadata={"help": "Where to run: cpu, cuda, cuda:1, ..."})
    bf16: bool = field(
        default=False, metadata={"help": "bf16 autocast around forward and loss, as the Trainer's --bf16."}
    )
    tf32: bool = field(default=True, metadata={"help": "TF32 matmuls for fp32 work on CUDA (the Trainer's --tf32)."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (the step) or the tower."})
    compile_backend: str = field(
        default="inductor", metadata={"help": "torch.compile backend ('aot_eager': no code generation)."}
    )
    channels_last: bool = field(default=False, metadata={"help": "CXR tower and radiographs in channels-last layout."})
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "attention of the BERT text tower: sdpa (transformers' pick) or eager."}
    )
    contrastive_chunk_size: int | None = field(
        default=None, metadata={"help": "run the step by gradient caching, this many samples per modality at once."}
    )
    peak_tflops: float | None = field(
        default=None, metadata={"help": "the device's peak TFLOP/s in the step's precision, for MFU (none: no MFU)."}
    )
    json_path: str | None = field(
        default=None, metadata={"aliases": ["--json"], "help": "Also write the measurements to this JSON file."}
    )

    def __post_init__(self):
        unknown = sorted(set(self.presets) - set(PRESETS))
        if unknown:
            raise ValueError(f"--presets: unknown preset(s) {unknown}; choose among {sorted(PRESETS)}")
        unknown = sorted(set(self.workloads) - set(WORKLOADS))
        if unknown:
            raise ValueError(f"--workloads: unknown workload(s) {unknown}; choose among {list(WORKLOADS)}")
        device_type = torch.device(self.device).type
        accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
        if device_type != "cpu" and (accelerator is None or accelerator.type != device_type):
            raise ValueError(f"--device {self.device}: no {device_type} accelerator is available on this machine")
        if self.batch_size is None:
            self.batch_size = CPU_BATCH_SIZE if device_type == "cpu" else ACCELERATOR_BATCH_SIZE
        for name in ("batch_size", "text_length", "repeats", "contrastive_chunk_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ValueError(f"--peak_tflops must be positive, got {self.peak_tflops}")
        if self.threads is None:
            # The cores this process may run on: its affinity mask where the OS has one.
            self.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Measurement:
    """One timed workload (a key of `WORKLOADS`).

    Args:
        ecg_patch_size: patch size of the ECG tower, None for a workload that does not run it.
        ecg_tokens: tokens the ECG tower attends over (class token included), None likewise.
        flops: floating-point operations of one call, counted by `FlopCounterMode`.
        peak_memory_bytes: accelerator memory high-water mark of the timed calls, or the process's peak RSS on CPU.
        mfu: achieved FLOP/s over the stated peak (a fraction), None without `--peak_tflops`.
    """

    preset: str
    workload: str
    ecg_patch_size: int | None
    ecg_tokens: int | None
    parameters: int
    flops: int
    times_s: list[float]
    median_s: float
    peak_memory_bytes: int | None
    mfu: float | None

    @property
    def achieved_tflops(self) -> float:
        """Counted FLOPs per second of the median call, in TFLOP/s."""
        return self.flops / self.median_s / 1e12


def random_batch(config: MedBindConfig, batch_size: int, text_length: int, device: torch.device) -> dict:
    """A training batch for `medbind_training.losses.batch_loss` of random inputs with the shapes the processor
    produces: `batch_size` rows of each modality, row i of the CXRs paired with row i of the ECGs (so EMCL runs), the
    CXRs' reports then the ECGs', `text_length` tokens each, all attended."""
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
    }


def build_model(config: MedBindConfig, args: BenchmarkArguments, device: torch.device) -> MedBindModel:
    """The model of `config` in training mode on `device`, with the benchmark's attention and memory layout."""
    model = MedBindModel(config).to(device).train()
    # Reaches the BERT text tower and the ECG transformer (both dispatch through transformers' attention interface).
    model.set_attn_implementation(args.attn_implementation)
    if args.channels_last and model.cxr_model is not None:
        model.cxr_model.to(memory_format=torch.channels_last)
    return model


def autocast(args: BenchmarkArguments) -> Callable[[], contextlib.AbstractContextManager]:
    """The forward's context: bf16 autocast on the benchmark's device with `--bf16`, else nothing."""
    if not args.bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16)


def workload_step(
    model: MedBindModel, batch: dict, workload: str, args: BenchmarkArguments, optimizer: torch.optim.Optimizer | None
) -> Callable[[], None]:
    """
    A callable running one call of a workload: forward (under `autocast(args)`), backward, and for the training step
    `optimizer.step()`. Gradients are dropped first so that every call costs the same.

    `workload` is `"train_step"` for the MedBind loss of the whole batch (by gradient caching with
    `--contrastive_chunk_size`), or a tower (`"cxr"`, `"text"`, `"ecg"`) for the sum of its embeddings, which sends
    a gradient through the tower alone (then `optimizer` is None).
    """
    context = autocast(args)
    if workload == "train_step" and args.contrastive_chunk_size:
        forward = torch.compile(model, backend=args.compile_backend) if args.compile else model

        def run() -> None:
            gradient_cached_step(forward, batch, args.contrastive_chunk_size, loss_model=model, context=context)

    else:
        if workload == "train_step":
            forward = lambda: batch_loss(model, batch).loss  # noqa: E731
        else:
            method, keys = TOWER_INPUTS[workload]
            embed = getattr(model, method)
            forward = lambda: embed(*(batch[key] for key in keys)).pooler_output.sum()  # noqa: E731
        if args.compile:
            forward = torch.compile(forward, backend=args.compile_backend)

        def run() -> None:
            with context():
                loss = forward()
            loss.backward()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        run()
        if optimizer is not None:
            optimizer.step()

    return step


def workload_parameters(model: MedBindModel, workload: str) -> int:
    """Parameters a workload runs through: the whole model, or a tower and its projection."""
    if workload == "train_step":
        return model.num_parameters()
    modules = (getattr(model, f"{workload}_model"), getattr(model, f"{workload}_projection"))
    return sum(parameter.numel() for module in modules for parameter in module.parameters())


def synchronize(device: torch.device) -> None:
    """Wait for queued accelerator work, so that a clock read after it counts that work (a no-op on CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def time_calls(
    function: Callable[[], None], warmup: int, repeats: int, device: torch.device, progress: tqdm
) -> list[float]:
    """Call `function` `warmup` times untimed, then `repeats` times timed (their wall-clock seconds are
    returned), advancing `progress` once per call."""
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


def peak_memory(device: torch.device) -> int | None:
    """`torch.cuda.max_memory_allocated` on CUDA, the process's peak RSS on the CPU, None elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if device.type == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
    return None


def run_benchmark(args: BenchmarkArguments) -> list[Measurement]:
    """Count and time the workloads in `args` for every preset and ECG patch size.

    The CXR and text towers do not depend on the ECG patch size, so they are timed once per preset (on the first
    patch size's model). torch's CPU thread count (and, on CUDA, the TF32 switch) are set for the run and restored
    afterwards. The measurements come per preset in `WORKLOADS` order, per workload in `args.ecg_patch_sizes` order.
    """
    device = torch.device(args.device)
    calls_per_workload = args.warmup + args.repeats + 1  # + 1: the FLOP count
    calls = sum(
        calls_per_workload * (len(args.ecg_patch_sizes) if workload in ("train_step", "ecg") else 1)
        for workload in args.workloads
    )
    progress = tqdm(total=len(args.presets) * calls, unit="call")
    previous_threads, previous_tf32 = torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    measurements = []
    try:
        for preset in args.presets:
            for index, patch_size in enumerate(args.ecg_patch_sizes):
                config = MedBindConfig.from_preset(preset, ecg_config={"patch_size": patch_size})
                model = build_model(config, args, device)
                batch = random_batch(config, args.batch_size, args.text_length, device)
                if args.channels_last:
                    batch["pixel_values"] = batch["pixel_values"].contiguous(memory_format=torch.channels_last)
                # The paper's optimiser (AdamW, lr 4e-4, weight decay 0.1), fused as the Trainer's default.
                optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1, fused=True)
                for workload in args.workloads:
                    if index > 0 and workload not in ("train_step", "ecg"):
                        continue
                    progress.set_description(f"{preset}, ECG patch {patch_size}: {workload}")
                    optimizer_if_step = optimizer if workload == "train_step" else None
                    # FLOPs of one untimed call (forward and backward), counted on the eager model: the same arithmetic.
                    eager_args = BenchmarkArguments(**{**asdict(args), "compile": False})
                    eager = workload_step(model, batch, workload, eager_args, optimizer_if_step)
                    with FlopCounterMode(display=False) as counter:
                        eager()
                    flops = counter.get_total_flops()
                    progress.update()
                    step = workload_step(model, batch, workload, args, optimizer_if_step) if args.compile else eager
                    if device.type == "cuda":  # a new high-water mark (the CPU's peak RSS cannot be reset)
                        torch.cuda.reset_peak_memory_stats(device)
                    times = time_calls(step, args.warmup, args.repeats, device, progress)
                    median = statistics.median(times)
                    runs_ecg = workload in ("train_step", "ecg")
                    measurements.append(
                        Measurement(
                            preset=preset,
                            workload=workload,
                            ecg_patch_size=patch_size if runs_ecg else None,
                            ecg_tokens=config.ecg_config.num_patches + 1 if runs_ecg else None,
                            parameters=workload_parameters(model, workload),
                            flops=flops,
                            times_s=times,
                            median_s=median,
                            peak_memory_bytes=peak_memory(device),
                            mfu=flops / median / (args.peak_tflops * 1e12) if args.peak_tflops else None,
                        )
                    )
    finally:
        torch.set_num_threads(previous_threads)
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
        progress.close()
    # A stable sort keeps the patch sizes in the order given within each workload.
    order = list(WORKLOADS)
    return sorted(measurements, key=lambda row: (args.presets.index(row.preset), order.index(row.workload)))


def device_name(device: torch.device) -> str:
    """The device for the table's caption: `cpu`, or the accelerator's product name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def settings_caption(args: BenchmarkArguments) -> str:
    """One line naming the device and every setting that changes the numbers."""
    tf32 = args.tf32 and torch.device(args.device).type == "cuda"
    precision = "bf16 autocast" if args.bf16 else ("fp32 (TF32 matmuls)" if tf32 else "fp32")
    options = [
        precision,
        f"BERT attention {args.attn_implementation}",
        f"torch.compile ({args.compile_backend})" if args.compile else "eager",
    ]
    if args.channels_last:
        options.append("channels-last CXR tower")
    if args.contrastive_chunk_size:
        options.append(f"gradient caching in chunks of {args.contrastive_chunk_size}")
    return (
        f"MedBind training step on {device_name(torch.device(args.device))} ({args.threads} CPU threads), "
        f"batch {args.batch_size} per modality, reports at {args.text_length} tokens, {', '.join(options)}, "
        f"fused AdamW; median of {args.repeats} after {args.warmup} warm-up calls. The step runs the text tower "
        "once over 2 x batch reports (CXR and ECG reports). FLOPs counted by FlopCounterMode"
        + (f"; MFU against {args.peak_tflops:g} TFLOP/s." if args.peak_tflops else "; no --peak_tflops, no MFU.")
    )


def markdown_table(measurements: list[Measurement], args: BenchmarkArguments) -> str:
    """The measurements as a markdown table, one row per measurement, under a caption stating the settings."""
    memory_name = "peak GiB" if args.device != "cpu" else "peak RSS GiB"
    lines = [
        settings_caption(args),
        "",
        f"| preset | workload | ECG patch_size | ECG tokens | parameters | s/call (median) | samples/s "
        f"| TFLOP/call | TFLOP/s | MFU | {memory_name} |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in measurements:
        patch, tokens = (("-", "-") if row.ecg_patch_size is None else (row.ecg_patch_size, row.ecg_tokens))
        mfu = "n/a" if row.mfu is None else f"{100 * row.mfu:.1f}%"
        memory = "n/a" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**30:.1f}"
        # Samples as the Trainer's train_samples_per_second counts them: slots (a CXR and an ECG) per second.
        samples = f"{args.batch_size / row.median_s:.1f}" if row.workload == "train_step" else "-"
        lines.append(
            f"| {row.preset} | {WORKLOADS[row.workload]} | {patch} | {tokens} | {row.parameters / 1e6:.2f} M "
            f"| {row.median_s:.3f} | {samples} | {row.flops / 1e12:.3f} "
            f"| {row.achieved_tflops:.2f} | {mfu} | {memory} |"
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
        "measurements": [{**asdict(row), "achieved_tflops": row.achieved_tflops} for row in measurements],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> list[Measurement]:
    """Parse `argv` (default: the command line) into `BenchmarkArguments`, run the benchmark, print the markdown
    table and write the JSON report when `--json` is given."""
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    measurements = run_benchmark(args)
    print(markdown_table(measurements, args))
    if args.json_path is not None:
        write_json(measurements, args, args.json_path)
    return measurements


if __name__ == "__main__":
    main()
