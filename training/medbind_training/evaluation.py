"""Evaluate a saved MedBind model as the paper does (`training/run_evaluation.py`; the tasks: `evaluation_tasks`).

`--dataset_dir DATA` holds the `cxr/`, `ecg/`, `pairs/` DatasetDicts of `medbind_processing.demo` or the MIMIC
builders; `--eval_dataset NAME=PATH` adds the external sets of the other builders (ptbxl, cpsc2018, covid, rsna,
chexpert5x200, openi). Writes `OUT/results.json` (flat keys, percent: `medbind_training.results_keys`)
and the figures `retrieval.png`, `few_shot.png`, `tsne.png`.

Other models run every task that applies to their modalities on the same splits, support sets and prompt files,
their keys behind a prefix: each `--baseline NAME=PATH` under `baselines/NAME/`; the encoder zoo (`--zoo_cxr_model`,
`--zoo_ecg_model`) under `zoo/`, CXR datasets with the CXR model, ECG datasets with the ECG model, CXR <-> ECG tasks
with both. The t-SNE map is drawn for every model with CXR and ECG towers, a row per model in `tsne.png`. Embeddings
are cached in `OUT/embedding_cache` (`--embedding_cache_dir`), so a second run with other tasks does not embed again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from modeling_medbind.configuration_medbind import MODALITIES

from .arguments import optional_argument, parse_arguments
from .baselines import load_baseline, parse_baselines, task_embedder
from .embedding import Embedder, TaskEmbedder, load_model, modality_of
from .evaluation_tasks import (
    FEW_SHOT_SHOTS,
    TASKS,
    TsneMap,
    class_names,
    cross_modal_results,
    few_shot_results,
    modality_text_retrieval,
    row_labels,
    single_class_rows,
    tsne_map,
    zero_shot_results,
)
from .figures import plot_few_shot, plot_recalls, plot_tsne
from .prompt_files import prompt_sets
from .results_keys import BASELINE_PREFIX, ZOO_PREFIX, model_key, model_name, rsum
from .retrieval import POSITIVE_RULES, RetrievalProtocol
from .splits import PAIRS, RetrievalSplit, dataset_paths, first_rows, load_dataset_dicts, pick_split, retrieval_split

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


@dataclass
class EvaluationArguments:
    """What to evaluate, on which data, and how (paper defaults)."""

    model_name_or_path: str = field(
        metadata={"help": "a saved MedBind folder or Hub id (AutoModel, trust_remote_code)"}
    )
    output_dir: str = field(metadata={"help": "where results.json, the figures and the embedding cache go"})
    dataset_dir: str | None = field(default=None, metadata={"help": "folder with cxr/, ecg/ and pairs/ DatasetDicts"})
    eval_dataset: list[str] = field(
        default_factory=list,
        metadata={"help": "external sets as NAME=PATH (ptbxl, cpsc2018, covid, rsna, chexpert5x200, openi)"},
    )
    split: str = field(default="test", metadata={"help": "the evaluated split (a set with one split uses that one)"})
    support_split: str = field(default="train", metadata={"help": "where few-shot and cross-modality labels come from"})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": f"any of {' '.join(TASKS)}"})
    few_shot_sets: int = field(default=300, metadata={"help": "seeded support sets per K (paper: 300)"})
    few_shot_shots: list[int] = field(default_factory=lambda: list(FEW_SHOT_SHOTS), metadata={"help": "the K values"})
    few_shot_regularization: float = field(default=1.0, metadata={"help": "inverse L2 strength C of the probes"})
    cross_modality_support_size: int = field(
        default=1000, metadata={"help": "support samples per class (positive, negative) for the prototypes"}
    )
    retrieval_positives: str = field(
        default="identical_text",
        metadata={"help": f"a retrieval hit: {' or '.join(POSITIVE_RULES)} (see RetrievalProtocol)"},
    )
    retrieval_gallery: str = field(
        default="all",
        metadata={"help": "retrieval candidates: 'all' rows of the split, or N: seeded galleries of N rows, averaged"},
    )
    retrieval_gallery_draws: int = field(default=10, metadata={"help": "permutations drawn for galleries of N"})
    zoo_cxr_model: str | None = field(
        default=None,
        metadata={"help": "encoder zoo: a separately trained CXR-text model (MedBind, CLIP, SigLIP or open_clip folder)"},
    )
    zoo_ecg_model: str | None = field(default=None, metadata={"help": "encoder zoo: an ECG-CLIP model"})
    baseline: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",  # argparse's default keeps only the last of repeated `--baseline`s
            "help": f"NAME=PATH, repeatable: a CLIP, SigLIP, open_clip or MedBind folder, keys {BASELINE_PREFIX}NAME/",
        },
    )
    prompt_dir: str | None = field(
        default=None,
        metadata={"help": "a folder of prompt files; each replaces the packaged prompts of the datasets it names"},
    )
    batch_size: int = field(default=64, metadata={"help": "samples per forward pass"})
    device: str | None = field(default=None, metadata={"help": "default: cuda when available, else cpu"})
    embedding_cache_dir: str | None = field(
        default=None, metadata={"help": "default: OUTPUT_DIR/embedding_cache; 'none': no cache"}
    )
    max_samples: int | None = field(default=None, metadata={"help": "first N rows of each split (quick checks)"})
    tsne_max_points: int = field(default=1000, metadata={"help": "points per modality in the t-SNE map"})
    seed: int = field(default=0, metadata={"help": "seed of prompt sampling, support sets and t-SNE"})

    def __post_init__(self) -> None:
        if unknown := set(self.tasks) - set(TASKS):
            raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {TASKS}")
        if self.few_shot_sets < 2:
            raise ValueError(f"--few_shot_sets must be at least 2 for a confidence interval, got {self.few_shot_sets}")
        if bool(self.zoo_cxr_model) != bool(self.zoo_ecg_model):
            raise ValueError("the encoder zoo needs both --zoo_cxr_model and --zoo_ecg_model")
        if malformed := [item for item in self.eval_dataset if "=" not in item]:
            raise ValueError(f"--eval_dataset takes NAME=PATH, got {malformed}")
        if not self.dataset_dir and not self.eval_dataset:
            raise ValueError("nothing to evaluate: give --dataset_dir and/or --eval_dataset NAME=PATH")
        parse_baselines(self.baseline)  # a malformed or missing baseline fails before any embedding
        _ = self.retrieval_protocol  # a bad --retrieval_positives / --retrieval_gallery fails before any embedding

    @property
    def retrieval_protocol(self) -> RetrievalProtocol:
        """The retrieval protocol these arguments ask for (its draws seeded by `seed`)."""
        return RetrievalProtocol.from_arguments(
            self.retrieval_positives, self.retrieval_gallery, self.retrieval_gallery_draws, self.seed
        )

    @property
    def cache_dir(self) -> str | None:
        """The embedding cache folder, None when disabled."""
        if self.embedding_cache_dir is None:
            return os.path.join(self.output_dir, "embedding_cache")
        return optional_argument(self.embedding_cache_dir)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """`training/run_evaluation.py`: parse the arguments (command line, or a YAML / JSON file) and evaluate."""
    (args,) = parse_arguments((EvaluationArguments,), "run_evaluation", argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info("evaluating with %s", json.dumps(asdict(args)))
    results = run_evaluation(args)
    print(json.dumps(results, indent=2, sort_keys=True))
    return results


def load_evaluation_data(args: EvaluationArguments) -> dict[str, datasets.DatasetDict]:
    """`{name: DatasetDict}`: `cxr`, `ecg`, `pairs` of `--dataset_dir` (those present) and every `--eval_dataset`."""
    found = load_dataset_dicts(dataset_paths(args.dataset_dir, **dict.fromkeys((*MODALITIES, PAIRS))))
    data = {name: dataset_dict for name, dataset_dict in found.items() if dataset_dict is not None}
    for item in args.eval_dataset:
        name, path = item.split("=", 1)
        if not Path(path).is_dir():
            raise FileNotFoundError(f"--eval_dataset {name}: {path} is not a folder written by save_to_disk")
        data[name] = datasets.load_from_disk(path)
    return data


def evaluate_datasets(
    embedders: dict[str, TaskEmbedder],
    data: dict[str, datasets.DatasetDict],
    evaluated: RetrievalSplit,
    support: RetrievalSplit,
    args: EvaluationArguments,
) -> tuple[dict[str, float], TsneMap | None]:
    """Every task of `args.tasks` on every dataset a model can embed, `(results, tsne)`: a dataset of modality m (and
    its reports and prompts) is embedded by `embedders[m]`, and skipped without one; the t-SNE map is None unless asked
    and both modalities are embedded.
    """
    tasks, prompts = set(args.tasks), prompt_sets(args.prompt_dir)
    results: dict[str, float] = {}
    embeds = {}
    for name, dataset_dict in data.items():
        if name == PAIRS:
            continue
        dataset = pick_split(dataset_dict, args.split, args.max_samples)
        modality = modality_of(next(iter(dataset_dict.values())))
        if dataset is None or modality not in embedders:
            logger.warning("%s: no %r split or no %s tower; skipped", name, args.split, modality)
            continue
        embedder = embedders[modality]
        embeds[name] = embedder.embed(dataset, modality, name)
        prompt_set = prompts.get(name)
        if "retrieval" in tasks:
            results |= modality_text_retrieval(embedder, name, dataset, modality, embeds[name], args.retrieval_protocol)
        labelled = {"label", "labels"} & set(dataset.column_names)
        if "zero_shot" in tasks and prompt_set is not None and labelled:
            results |= zero_shot_results(embedder, name, dataset, embeds[name], prompt_set, args.seed)
        labelled_support = dataset_dict.get(args.support_split) if args.support_split != args.split else None
        if "few_shot" in tasks and labelled and labelled_support is not None:
            classes = list(prompt_set.classes) if prompt_set else class_names(dataset)
            results |= few_shot_results(
                embedder, name, first_rows(labelled_support, args.max_samples), dataset, embeds[name], classes,
                args.few_shot_shots, args.few_shot_sets, args.seed, args.few_shot_regularization,
            )  # fmt: skip
    results |= cross_modal_results(
        embedders, evaluated, support, args.tasks, args.cross_modality_support_size, args.seed, args.retrieval_protocol
    )
    tsne = None
    both = set(MODALITIES) <= set(embedders) and evaluated.cxr is not None and evaluated.ecg is not None
    if "tsne" in tasks and both:
        tsne = dataset_tsne(embedders, evaluated, prompts, args)
    return results | rsum(results), tsne


def dataset_tsne(
    embedders: dict[str, TaskEmbedder], evaluated: RetrievalSplit, prompts: dict, args: EvaluationArguments
) -> TsneMap:
    """t-SNE of up to `tsne_max_points` CXR and ECG samples of the evaluated split, each embedded by
    `embedders[modality]`, classes from their prompt files.
    """
    rng = np.random.default_rng(args.seed)
    embeds, classes = {}, {}
    for modality in MODALITIES:
        dataset = getattr(evaluated, modality)
        rows = np.sort(rng.permutation(len(dataset))[: args.tsne_max_points])
        embeds[modality] = embedders[modality].embed(dataset, modality, modality)[rows]
        labels = row_labels(dataset)
        names = list(prompts[modality].classes) if modality in prompts else sorted({n for row in labels for n in row})
        kept, targets = single_class_rows(labels, names)
        single = dict(zip(kept.tolist(), targets.tolist()))
        classes[modality] = [f"{modality.upper()} {names[single[r]]}" if r in single else "other" for r in rows]
    return tsne_map(embeds, classes, seed=args.seed)


def run_evaluation(
    args: EvaluationArguments, model: torch.nn.Module | None = None, processor: Any | None = None
) -> dict[str, Any]:
    """Evaluate, write `results.json` and the figures into `args.output_dir`, and return the results. `model` and
    `processor` may be an already loaded model (e.g. at the end of pretraining); default: `args.model_name_or_path`.
    """
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def other_model(name: str, path: str, modality: str | None = None) -> TaskEmbedder:
        other = task_embedder(load_baseline(name, path, args.batch_size, device), args.cache_dir)
        if modality is not None and modality not in other.modalities:
            raise ValueError(f"--{name}_model {path} has no {modality.upper()} tower (it embeds {other.modalities})")
        return other

    data = load_evaluation_data(args)
    # Split and pairs once, for every model: the support split serves prototypes (its datasets), not its pairs.
    evaluated = retrieval_split(data, args.split, args.max_samples)
    support = retrieval_split(data, args.support_split, args.max_samples, with_pairs=False)
    if model is None:
        model, processor = load_model(args.model_name_or_path)
    main_embedder = Embedder(model.to(device), processor, args.batch_size, device, args.cache_dir)
    # Each model's embedder per modality, by key prefix: the evaluated model's keys have none.
    models: dict[str, dict[str, TaskEmbedder]] = {"": dict.fromkeys(main_embedder.modalities, main_embedder)}
    for name, path in parse_baselines(args.baseline).items():
        baseline = other_model(name, str(path))
        models[f"{BASELINE_PREFIX}{name}/"] = {modality: baseline for modality in baseline.modalities}
    if args.zoo_cxr_model:
        # The paper's encoder-zoo baseline: separately trained CXR and ECG encoders, each on its own modality.
        models[ZOO_PREFIX] = {modality: other_model(f"zoo_{modality}", getattr(args, f"zoo_{modality}_model"), modality)
                              for modality in MODALITIES}  # fmt: skip
    results, tsnes = {}, {}
    for prefix, embedders in models.items():
        model_results, tsne = evaluate_datasets(embedders, data, evaluated, support, args)
        results |= {model_key(prefix, key): value for key, value in model_results.items()}
        if tsne is not None:
            tsnes[model_name(prefix)] = tsne
    output = {"model": args.model_name_or_path, "split": args.split, **args.retrieval_protocol.describe(), **results}
    save_results(output, tsnes, args.output_dir)
    return output


def save_results(results: dict[str, Any], tsnes: dict[str, TsneMap], output_dir: str | Path) -> None:
    """`results.json`, the figures whose numbers `results` holds, and `tsne.png` of the `{model: map}` `tsnes`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    numbers = {key: value for key, value in results.items() if isinstance(value, float | int)}
    title = f"{Path(str(results.get('model', 'MedBind'))).name}, {results.get('split', '')} split"
    if any(key.startswith("retrieval/") and "@" in key for key in numbers):
        plot_recalls(numbers, output_dir / "retrieval.png", title=f"Retrieval: {title}")
    if any(key.startswith("few_shot/") for key in numbers):
        plot_few_shot(numbers, output_dir / "few_shot.png", title=f"Few-shot: {title}")
    if tsnes:
        plot_tsne(tsnes, output_dir / "tsne.png", title=f"t-SNE: {title}")


if __name__ == "__main__":
    main()
