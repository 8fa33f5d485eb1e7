"""`medbind`: embed, classify zero-shot and search chest X-rays, ECGs and texts with a saved MedBind model, and render
its model card again.

    medbind embed     --model DIR [--cxr FILE...] [--ecg RECORD...] [--text TEXT...] --output embeddings.safetensors
    medbind zero-shot --model DIR (--ecg RECORD... | --cxr FILE...) (--labels LABEL... | --prompts FILE)
    medbind index     --model DIR [--cxr FILE...] [--ecg RECORD...] [--text TEXT...] --out INDEX
    medbind search    --model DIR --index INDEX [--cxr FILE...] [--ecg RECORD...] [--text TEXT...] [--modality M]
    medbind card      --model DIR --results results.json

Exit status: 0 on success, 2 on bad input. Every unreadable input is reported on stderr with its name and the
reason, and then nothing is written: a script can rely on an output file being complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import pipeline

from medbind.index import INDEX_KINDS, EmbeddingIndex, build_index
from modeling_medbind import MedBindModel, MedBindProcessor
from modeling_medbind.pipeline_medbind import (
    DEFAULT_HYPOTHESIS_TEMPLATES,
    process_one,
    prompts_by_label,
)

READ_ERRORS = (OSError, ValueError, ImportError)  # a missing file, a corrupt file, a DICOM without pydicom
EXIT_OK = 0
EXIT_BAD_INPUT = 2  # also argparse's status for a bad command line
EMBEDDINGS = "embeddings"  # the tensor of an embeddings file; its metadata holds `sources`, `modalities`, `model`
MODALITIES = ("cxr", "ecg", "text")
METAVARS = {"cxr": "FILE", "ecg": "RECORD", "text": "TEXT"}
INPUT_HELP = {
    "cxr": "chest X-ray image files: PNG, JPEG, DICOM (needs pydicom) or anything else Pillow opens",
    "ecg": "ECGs: WFDB records (the record's path, with or without .hea), DICOM ECG waveforms (.dcm) or GE MUSE XML "
    "(.xml); each file gives its rate, lead names and units",
    "text": "texts, e.g. reports (quote each one)",
}


class BadInput(Exception):
    """Inputs a command cannot use; `problems` holds one message per input, naming it and the reason."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `medbind` command: `EXIT_OK`, or `EXIT_BAD_INPUT` after reporting each problem on stderr (argparse
    exits with the same status for a bad command line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except BadInput as error:
        for problem in error.problems:
            print(f"medbind {args.command}: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The `medbind` argument parser: one sub-command per task, each flag with its help."""
    parser = argparse.ArgumentParser(
        prog="medbind",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 on success, 2 on bad input (each unreadable input is named, with the reason).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    embed = _command(commands, "embed", run_embed, "embed inputs and write them, with their names, to a file")
    _add_inputs(embed, "the inputs to embed (any of the three, at least one)")
    embed.add_argument(
        "--output", "-o", type=Path, required=True, help="the safetensors file to write (overwritten if present)"
    )

    zero_shot = _command(commands, "zero-shot", run_zero_shot, "print the class probabilities of ECGs or CXRs")
    inputs = zero_shot.add_argument_group("inputs (one modality)").add_mutually_exclusive_group(required=True)
    for modality in ("ecg", "cxr"):
        inputs.add_argument(f"--{modality}", nargs="+", metavar=METAVARS[modality], help=INPUT_HELP[modality])
    classes = zero_shot.add_argument_group("classes").add_mutually_exclusive_group(required=True)
    classes.add_argument("--labels", nargs="+", metavar="LABEL", help="the class labels, each put into --template")
    classes.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE",
        help="a prompt file as in training/medbind_training/prompts (YAML or JSON: `classes:` label -> prompt or list of prompts, "
        "optional `template:` with {label}); a class's prompts are averaged",
    )
    templates = DEFAULT_HYPOTHESIS_TEMPLATES
    zero_shot.add_argument(
        "--template",
        help=f'the prompt of each --labels label, {{}} standing for the label (default: "{templates["ecg"]}" for '
        f'--ecg, "{templates["cxr"]}" for --cxr)',
    )

    index = _command(commands, "index", run_index, "embed files and texts into a searchable index (resumable)")
    _add_inputs(index, "the inputs to index (any of the three, at least one)")
    index.add_argument("--out", type=Path, required=True, metavar="INDEX",
                       help="the index folder; a re-run adds what it does not hold yet and skips the rest")  # fmt: skip
    index.add_argument(
        "--kind",
        choices=INDEX_KINDS,
        default="auto",
        help="flat: exact search; hnsw: approximate, faster on millions of items (recall in benchmarks/README.md); "
        "auto (default): flat below a million items",
    )

    search = _command(commands, "search", run_search, "find the indexed items most similar to queries")
    search.add_argument("--index", type=Path, required=True, metavar="INDEX", help="a folder of `medbind index`")
    _add_inputs(search, "the queries (any of the three, at least one); each is compared with every index entry")
    search.add_argument("--modality", choices=MODALITIES, help="only return items of this modality (default: all)")
    search.add_argument("--top-k", type=_positive, default=5, help="entries to print per query (default: 5)")

    card = _command(commands, "card", run_card, "render the model card (README.md) again from a results.json")
    card.add_argument(
        "--results", type=Path, required=True, help="the results.json of `training/run_evaluation.py` (its `split` is shown)"
    )
    card.add_argument("--output", "-o", type=Path, help="where to write the card (default: README.md in --model)")

    export = _command(commands, "export", run_export, "write each tower of the model as its own ONNX file")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="the file format (default: onnx)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write the files to")
    return parser


def _command(commands, name: str, run: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
    """A sub-command with the arguments every command shares."""
    command = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    command.set_defaults(run=run)
    command.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="a saved MedBind model folder, with its processor" + (" (or a Hub id)" if name != "card" else ""),
    )
    if name not in ("card", "export"):
        command.add_argument("--batch-size", type=_positive, default=16, help="inputs per forward pass (default: 16)")
        command.add_argument("--device", help="torch device to run on (default: cuda if available, else cpu)")
    return command


def _add_inputs(command: argparse.ArgumentParser, title: str) -> None:
    group = command.add_argument_group(title)
    for modality in MODALITIES:
        group.add_argument(
            f"--{modality}", nargs="+", default=[], metavar=METAVARS[modality], help=INPUT_HELP[modality]
        )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _inputs(args: argparse.Namespace) -> dict[str, list[str]]:
    """`{modality: inputs}` of the modalities given (at least one)."""
    inputs = {modality: getattr(args, modality) for modality in MODALITIES if getattr(args, modality)}
    if not inputs:
        raise BadInput(["give at least one input: --cxr FILE..., --ecg RECORD... or --text TEXT..."])
    return inputs


def load_model(args: argparse.Namespace) -> tuple[MedBindModel, MedBindProcessor]:
    """The model (in eval mode, on `--device`) and processor of `--model`; `BadInput` if it is no MedBind folder."""
    from medbind_training.embedding import load_model as load_medbind  # here: the commands that need no model start faster

    transformers.utils.logging.disable_progress_bar()  # loading takes a moment; the commands show their own bars
    try:
        model, processor = load_medbind(args.model, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise BadInput([f"--model {args.model}: cannot load a MedBind model and processor: {error}"]) from error
    if not isinstance(model, MedBindModel) or not isinstance(processor, MedBindProcessor):
        raise BadInput([f"--model {args.model}: holds a {type(model).__name__}, not a pretrained MedBindModel"])
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.eval().to(device), processor


def pipeline_outputs(
    task: str,
    model: MedBindModel,
    processor: MedBindProcessor,
    modality: str,
    inputs: Sequence[str],
    batch_size: int,
    **parameters: Any,
) -> list[Any]:
    """
    The outputs of MedBind's pipeline `task` for inputs of one modality, `batch_size` inputs per forward pass, with a
    progress bar for more than one batch.

    The pipeline stops at the first unreadable input; to report them all by name (`BadInput`), a batch that fails
    is read input by input, and after the first failure the remaining inputs are only read, no longer run.
    """
    run = pipeline(task, model=model, processor=processor, device=model.device)
    batches = [list(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    outputs: list[Any] = []
    problems: list[str] = []
    for batch in tqdm(batches, desc=f"{task} ({modality})", unit="batch", disable=len(batches) < 2 or None):
        if problems:  # nothing more runs: the rest is only read, to name every unreadable input
            problems += unreadable(processor, modality, batch)
            continue
        try:
            outputs += run(batch, modality=modality, batch_size=batch_size, **parameters)
        except READ_ERRORS:
            if not (found := unreadable(processor, modality, batch)):
                raise  # not an input's fault
            problems += found
    if problems:
        raise BadInput(problems)
    return outputs


def unreadable(processor: MedBindProcessor, modality: str, inputs: Sequence[str]) -> list[str]:
    """`"{input}: {reason}"` for each input the processor cannot read."""
    problems = []
    for item in inputs:
        try:
            process_one(processor, modality, item)
        except READ_ERRORS as error:
            problems.append(f"{item}: {error}")
    return problems


def embed_inputs(
    model: MedBindModel, processor: MedBindProcessor, modality: str, inputs: Sequence[str], batch_size: int
) -> torch.Tensor:
    """`[len(inputs), projection_dim]` float32 L2-normalised embeddings, on the CPU, of inputs of one
    modality (`pipeline_outputs` of the feature-extraction pipeline)."""
    embeds = pipeline_outputs(
        "medbind-feature-extraction", model, processor, modality, inputs, batch_size, return_tensors=True
    )
    return torch.stack(embeds).float().cpu()


def embed_modalities(
    model: MedBindModel, processor: MedBindProcessor, inputs: dict[str, Sequence[str]], batch_size: int
) -> dict[str, torch.Tensor]:
    """`embed_inputs` for each modality of `inputs` (`{modality: inputs}`), naming every unreadable input of every
    modality in one `BadInput`."""
    embeds, problems = {}, []
    for modality, items in inputs.items():
        try:
            embeds[modality] = embed_inputs(model, processor, modality, items, batch_size)
        except BadInput as error:
            problems += error.problems
    if problems:
        raise BadInput(problems)
    return embeds


def run_embed(args: argparse.Namespace) -> None:
    """`medbind embed`: write `embeddings [N, d]` with each row's source and modality to `--output`."""
    inputs = _inputs(args)
    model, processor = load_model(args)
    embeds = embed_modalities(model, processor, inputs, args.batch_size)
    metadata = {
        "sources": json.dumps([item for items in inputs.values() for item in items]),
        "modalities": json.dumps([modality for modality, items in inputs.items() for _ in items]),
        "model": str(args.model),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({EMBEDDINGS: torch.cat(list(embeds.values())).contiguous()}, args.output, metadata=metadata)
    counts = ", ".join(f"{len(items)} {modality}" for modality, items in inputs.items())
    print(f"wrote {sum(map(len, inputs.values()))} embeddings ({counts}) to {args.output}")


def run_zero_shot(args: argparse.Namespace) -> None:
    """`medbind zero-shot`: a table of each input's class probabilities and the most probable class."""
    modality = "ecg" if args.ecg else "cxr"
    inputs = args.ecg or args.cxr
    if args.prompts:
        from medbind_training.prompt_files import read_prompt_file
    try:
        candidates = read_prompt_file(args.prompts)[1].classes if args.prompts else args.labels
        prompts = prompts_by_label(candidates, args.template or DEFAULT_HYPOTHESIS_TEMPLATES[modality])
    except ValueError as error:
        raise BadInput([f"{'--prompts' if args.prompts else '--labels'}: {error}"]) from error
    model, processor = load_model(args)
    task = f"zero-shot-{modality}-classification"
    ranked = pipeline_outputs(task, model, processor, modality, inputs, args.batch_size, candidate_labels=prompts)
    labels = list(prompts)
    rows = []
    for item, scores in zip(inputs, ranked):
        probability = {entry["label"]: entry["score"] for entry in scores}
        rows.append([item, *(f"{probability[label]:.3f}" for label in labels), scores[0]["label"]])
    print_table([modality.upper(), *labels, "most probable"], rows)


def run_index(args: argparse.Namespace) -> None:
    """`medbind index`: embed the inputs batch by batch into `--out`, skipping those it already holds."""
    inputs = _inputs(args)
    model, processor = load_model(args)
    try:
        index = build_index(
            args.out,
            inputs,
            lambda modality, items: embed_inputs(model, processor, modality, items, args.batch_size).numpy(),
            # A folder by its absolute path, so that a re-run from elsewhere is recognised as the same model.
            model=str(Path(args.model).resolve()) if Path(args.model).is_dir() else str(args.model),
            batch_size=args.batch_size,
            kind=args.kind,
        )
    except ValueError as error:
        raise BadInput([f"--out {args.out}: {error}"]) from error
    print(f"index {args.out} holds {len(index)} items")


def run_search(args: argparse.Namespace) -> None:
    """`medbind search`: for each query, the `--top-k` most similar items of the index."""
    queries = _inputs(args)
    try:
        index = EmbeddingIndex.load(args.index)
    except ValueError as error:
        raise BadInput([f"--index: {error}"]) from error
    model, processor = load_model(args)
    if index.index.d != model.config.projection_dim:
        raise BadInput([f"--index: {index.index.d}-d embeddings, but --model {args.model} embeds in "
                        f"{model.config.projection_dim} dimensions: index with this model"])  # fmt: skip
    for modality, embeds in embed_modalities(model, processor, queries, args.batch_size).items():
        for item, hits in zip(queries[modality], index.search(embeds.numpy(), args.top_k, args.modality)):
            print(f"\nquery ({modality}): {item}")
            print_table(["rank", "cosine", "modality", "source"],
                        [[hit.rank, f"{hit.score:.3f}", hit.modality, hit.source] for hit in hits])  # fmt: skip


def run_card(args: argparse.Namespace) -> None:
    """`medbind card`: render the card of `--model` again with `--results` and write it."""
    from medbind_model_cards.medbind_pretrained import CARD_FILE, load_results, rerender_model_card

    try:
        card = rerender_model_card(args.model, load_results(args.results))
    except (OSError, ValueError) as error:
        raise BadInput([str(error)]) from error
    output = args.output or Path(args.model) / CARD_FILE
    card.save(output)
    print(f"wrote the model card to {output}")


def run_export(args: argparse.Namespace) -> None:
    """`medbind export`: one ONNX file per tower of `--model` in `--out` (see `medbind.export`)."""
    from medbind.export import export_onnx

    try:
        written = export_onnx(args.model, args.out)
    except (OSError, ImportError) as error:
        raise BadInput([str(error)]) from error
    for modality, path in written.items():
        print(f"wrote the {modality.upper() if modality != 'text' else 'text'} encoder to {path}")


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under a header, columns left-aligned to their widest cell."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
