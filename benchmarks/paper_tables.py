"""
The paper's comparison tables, in its layout, from `results.json` files: one row per model (the evaluated MedBind,
each `--baseline`, the encoder zoo), a chance row, one table per paper table.

- Table 2: report retrieval R@1 / R@5 / R@10 per modality and dataset, and RSUM; with Figure 2 (right), CXR <-> ECG
  retrieval of the same visit.
- Figure 3: zero-shot balanced accuracy, and few-shot balanced accuracy at each K.
- Table 3: cross-modality zero-shot balanced accuracy.
- Table 4: prompt tuning, accuracy / balanced accuracy / AUROC per task and model.

Usage (from the repository root):

    python benchmarks/paper_tables.py --evaluation outputs/eval/results.json \\
        --prompt_tuning outputs/pt/mortality-text-only/results.json outputs/pt/mortality-medbind/results.json \\
        --main_model MEDBind_BD --output outputs/paper_tables.md
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from medbind_training.results_keys import (
    CLASSIFICATION_KEY,
    FEW_SHOT_KEY,
    PROMPT_TUNING_KEY,
    RETRIEVAL_KEY,
    RSUM_KEY,
    prompt_tuning_rows,
    split_models,
)
from medbind_training.retrieval import RECALL_KS


@dataclass
class PaperTablesArguments:
    evaluation: str | None = field(default=None, metadata={"help": "results.json of run_evaluation.py"})
    prompt_tuning: list[str] = field(default_factory=list, metadata={"help": "results.json of prompt_tune.py runs"})
    main_model: str = field(default="MedBind", metadata={"help": "the row name of the evaluated model"})
    output: str | None = field(default=None, metadata={"help": "also write the Markdown here"})


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table: the header, its rule and one line per row."""
    return [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *(f"| {' | '.join(row)} |" for row in rows)]


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def numbers(values: Sequence[float | None]) -> str:
    """`a / b / c` (R@1 / R@5 / R@10, or one value per K), `-` when the model has none of them."""
    return "-" if all(value is None for value in values) else " / ".join(number(value) for value in values)


def every_key(models: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """All models' keys in one mapping: where chance levels are read (equal for every model of one split)."""
    return {key: value for metrics in models.values() for key, value in metrics.items()}


def retrieval_table(models: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Table 2 and Figure 2 (right): one column per dataset / direction (R@1 / R@5 / R@10), RSUM per modality."""
    keys = every_key(models)
    directions = list(
        dict.fromkeys(f"{m['dataset']}/{m['direction']}" for key in keys if (m := RETRIEVAL_KEY.match(key)))
    )
    modalities = sorted({m["modality"] for key in keys if (m := RSUM_KEY.match(key))})

    def recalls(metrics: Mapping[str, float], direction: str, name: str) -> str:
        return numbers([metrics.get(f"retrieval/{direction}/{name}@{k}") for k in RECALL_KS])

    header = ["model", *(f"{d.replace('_to_', ' -> ')} R@1/5/10" for d in directions),
              *(f"RSUM {m.upper()}" for m in modalities)]  # fmt: skip
    rows = [
        [name, *(recalls(metrics, d, "recall") for d in directions),
         *(number(metrics.get(f"retrieval/rsum_{m}")) for m in modalities)]
        for name, metrics in models.items()
    ]  # fmt: skip
    rows.append(["chance", *(recalls(keys, d, "chance") for d in directions), *("" for _ in modalities)])
    return markdown_table(header, rows)


def classification_table(models: Mapping[str, Mapping[str, float]], family: str) -> list[str]:
    """Figure 3 (zero-shot) or Table 3 (cross-modality): balanced accuracy per dataset or task, and chance."""
    keys = every_key(models)
    columns = list(dict.fromkeys(m["dataset"] for key in keys if (m := CLASSIFICATION_KEY.match(key))
                                 and m["family"] == family and m["name"] == "balanced_accuracy"))  # fmt: skip
    rows = [[name, *(number(metrics.get(f"{family}/{c}/balanced_accuracy")) for c in columns)]
            for name, metrics in models.items()]  # fmt: skip
    rows.append(["chance", *(number(keys.get(f"{family}/{c}/balanced_accuracy/chance")) for c in columns)])
    return markdown_table(["model", *columns], rows)


def few_shot_table(models: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Figure 3 (right): few-shot balanced accuracy at each K, one column per dataset."""
    keys = every_key(models)
    found = [(m["dataset"], int(m["k"])) for key in keys
             if (m := FEW_SHOT_KEY.match(key)) and m["name"] == "balanced_accuracy"]  # fmt: skip
    datasets = list(dict.fromkeys(dataset for dataset, _ in found))
    shots = sorted({k for _, k in found})

    def cell(metrics: Mapping[str, float], dataset: str, name: str) -> str:
        return numbers([metrics.get(f"few_shot/{dataset}/k{k}/{name}") for k in shots])

    rows = [[name, *(cell(metrics, d, "balanced_accuracy") for d in datasets)] for name, metrics in models.items()]
    rows.append(["chance", *(cell(keys, d, "chance") for d in datasets)])
    return markdown_table(["model", *(f"{d} K = {'/'.join(map(str, shots))}" for d in datasets)], rows)


def prompt_tuning_table(runs: Sequence[Mapping[str, float]]) -> list[str]:
    """Table 4: per task, one row per model (each run's mode, then its baselines, in the order given) and chance."""
    metrics_names = ("accuracy", "balanced_accuracy", "auroc")
    by_task: dict[str, list[list[str]]] = {}
    chance: dict[str, list[str]] = {}
    for results in runs:
        modes = {m["mode"] for key in results if (m := PROMPT_TUNING_KEY.match(key)) and m["mode"]}
        tasks = {m["task"] for key in results if (m := PROMPT_TUNING_KEY.match(key))}
        if len(modes) != 1 or len(tasks) != 1:
            raise ValueError(f"a prompt-tuning results.json holds one task and one mode, found {modes} / {tasks}")
        task = tasks.pop()
        for model, metrics in prompt_tuning_rows(results, modes.pop()).items():
            by_task.setdefault(task, []).append([task, model, *(number(metrics.get(name)) for name in metrics_names)])
            if task not in chance:
                chance[task] = [task, "chance", *(number(metrics.get(f"{name}/chance")) for name in metrics_names)]
    rows = [row for task, task_rows in by_task.items() for row in [*task_rows, chance[task]]]
    return markdown_table(["task", "model", "accuracy", "balanced accuracy", "AUROC"], rows)


def paper_tables(evaluation: Mapping[str, float] | None, prompt_tuning: Sequence[Mapping[str, float]],
                 main_model: str = "MedBind") -> str:  # fmt: skip
    """The Markdown of every table the results hold, each under its paper reference."""
    lines: list[str] = []
    if evaluation is not None:
        models = split_models({k: v for k, v in evaluation.items() if isinstance(v, int | float)}, main=main_model)
        lines += ["Table 2 and Figure 2 (right): retrieval, R@1 / R@5 / R@10 (percent)", "", *retrieval_table(models)]
        lines += ["", "Figure 3 (left): zero-shot, balanced accuracy", "", *classification_table(models, "zero_shot")]
        lines += ["", "Figure 3 (right): few-shot, balanced accuracy", "", *few_shot_table(models)]
        lines += ["", "Table 3: cross-modality zero-shot, balanced accuracy", ""]
        lines += classification_table(models, "cross_modality")
    if prompt_tuning:
        lines += ["", "Table 4: prompt tuning", "", *prompt_tuning_table(prompt_tuning)]
    return "\n".join(lines).lstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> str:
    (args,) = HfArgumentParser(PaperTablesArguments).parse_args_into_dataclasses(args=argv)
    if args.evaluation is None and not args.prompt_tuning:
        raise ValueError("nothing to tabulate: give --evaluation and/or --prompt_tuning results.json files")

    def read(path: str) -> dict[str, float]:
        try:
            return json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the results file {path}: {error}") from error

    evaluation = read(args.evaluation) if args.evaluation else None
    text = paper_tables(evaluation, [read(path) for path in args.prompt_tuning], args.main_model)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
