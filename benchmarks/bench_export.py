"""Embeddings per second of each tower on the CPU: PyTorch eager vs its ONNX file (`medbind export`) in onnxruntime.

    python benchmarks/bench_export.py --presets tiny paper --batch_size 8 --output benchmarks/results/export_cpu.json

Random weights (speed does not depend on them); one thread for both runtimes by default, so the numbers compare the
runtimes rather than the machine's load. Each tower is timed on the same random inputs of the processor's shapes.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from medbind.export import TOWER_INPUTS, example_inputs, export_onnx, towers
from modeling_medbind import MedBindConfig, MedBindModel


@dataclass
class ExportBenchmarkArguments:
    presets: list[str] = field(default_factory=lambda: ["tiny", "paper"], metadata={"help": "MedBind presets"})
    batch_size: int = field(default=8, metadata={"help": "inputs per call"})
    text_length: int = field(default=128, metadata={"help": "tokens per text (the paper's 100 words fit in 128)"})
    repeats: int = field(default=5, metadata={"help": "timed calls per tower and runtime (after one warm-up)"})
    threads: int = field(default=1, metadata={"help": "intra-op threads of torch and onnxruntime"})
    output: Path | None = field(default=None, metadata={"help": "JSON file for the results"})


def embeddings_per_second(run, batch_size: int, repeats: int) -> float:
    """The median over `repeats` timed calls of `run` (after a warm-up call), as embeddings per second."""
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return batch_size / statistics.median(seconds)


def bench_preset(preset: str, args: ExportBenchmarkArguments) -> dict[str, dict[str, float]]:
    """`{modality: {"torch": e/s, "onnxruntime": e/s}}` for a randomly initialised model of `preset`."""
    import onnxruntime

    torch.manual_seed(0)
    model = MedBindModel(MedBindConfig.from_preset(preset)).eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = export_onnx(model, folder)
        for modality in towers(model):
            inputs = example_inputs(model, modality, args.batch_size, args.text_length)
            features = getattr(model, f"get_{modality}_features")
            session = onnxruntime.InferenceSession(str(paths[modality]), options, providers=["CPUExecutionProvider"])
            feed = {name: value.numpy() for name, value in zip(TOWER_INPUTS[modality], inputs)}

            def eager() -> None:
                with torch.inference_mode():
                    features(*inputs)

            results[modality] = {
                "torch": round(embeddings_per_second(eager, args.batch_size, args.repeats), 1),
                "onnxruntime": round(
                    embeddings_per_second(lambda: session.run(None, feed), args.batch_size, args.repeats), 1
                ),
            }
            print(preset, modality, results[modality], flush=True)
    return results


def main() -> None:
    (args,) = HfArgumentParser(ExportBenchmarkArguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    results = {
        "arguments": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(args).items()},
        "torch": torch.__version__,
        "embeddings_per_second": {preset: bench_preset(preset, args) for preset in args.presets},
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
