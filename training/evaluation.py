"""MEDBind's evaluation (paper Section 3 and Tables 2-3, Figures 2-3): one implementation for every caller.

`training/evaluate.py` runs all of it on a saved model's test split; `MedBindTrainer.evaluate` runs the retrieval part
on the validation split during pretraining (`validation_retrieval`, which picks the best checkpoint).

Tasks, each a function of embeddings (`Embedder` turns datasets and texts into L2-normalised embeddings):

- **Retrieval** (`modality_text_retrieval`, `pair_retrieval`): recall@1/5/10 of modality -> report (identical reports
  are all hits) and CXR <-> ECG over a split's visit pairs; the paper's RSUM per modality (`rsum`).
- **Zero-shot** (`zero_shot_scores`): cosine similarity to each class's prompts (`training/prompts/*.yaml`),
  averaged over the prompts; balanced accuracy and macro one-vs-rest AUROC.
- **Few-shot** (`few_shot_balanced_accuracy`): a logistic-regression probe on frozen embeddings, trained on K labelled
  samples per class drawn from the support split (`support_sets`), scored on the whole evaluated split.
- **Cross-modality zero-shot** (`prototype_scores`): a class prototype per class from the *other* modality's
  labelled embeddings (ECG HYP vs not; CXR Cardiomegaly vs not), cosine to the query modality's paired samples.
- **t-SNE** (`tsne_map`): CXR and ECG embeddings in 2-D, coloured by modality and by class.

Multi-label rows (MIMIC's and the demo's CXR and ECG datasets): for classification against a class list (zero-shot,
few-shot, t-SNE colours), a row counts when exactly one of the listed classes is among its labels, as the paper uses
single-class ECGs; rows with none or several are left out, and the numbers kept are logged. The binary
cross-modality tasks need no such rule (a row is positive when the class is among its labels).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from modeling_medbind import MedBindModel, MedBindProcessor

from .data import MODALITIES, pair_rows, processed_ecgs
from .metrics import CHANCE_AUROC, balanced_accuracy, chance_balanced_accuracy, macro_auroc
from .retrieval import RECALL_KS, chance_recall_at_k, pair_groups, recall_at_k, recall_keys
from .text_groups import text_group_ids

logger = logging.getLogger(__name__)

TASKS = ("retrieval", "zero_shot", "few_shot", "cross_modality", "tsne")
FEW_SHOT_SHOTS = (1, 2, 4, 8, 16)  # paper Figure 3
PAIRS = "pairs"  # the visit-pair dataset of a DATA folder
PROMPTS = files("medbind.training") / "prompts"  # package data: a wheel finds it as a checkout does
RSUM_KS = (1, 10)  # the paper's RSUM adds R@1 and R@10 (Table 2)
TSNE_NEIGHBOURS = 5
FEW_SHOT_TEST_BLOCK = 8192  # test rows scored at once by all probes: 8192 x 300 sets x C classes of float32
_PROMPT_FILE_KEYS = {"datasets", "template", "classes", "prompts_per_class"}


@dataclass(frozen=True)
class CrossModalityTask:
    """Predict a label of the `support` modality from a `query`-modality sample of the same visit (paper Table 3)."""

    query: str
    support: str
    label: str


# Labels as the datasets name them: an ECG superclass (`ECG_SUPERCLASSES`) and a CheXpert observation.
CROSS_MODALITY_TASKS = {
    "hypertrophy_from_cxr": CrossModalityTask(query="cxr", support="ecg", label="HYP"),
    "cardiomegaly_from_ecg": CrossModalityTask(query="ecg", support="cxr", label="Cardiomegaly"),
}


# ---- results.json keys: built here, parsed here (figures and model cards read them back) -------------------------

RETRIEVAL_KEY = re.compile(
    r"^retrieval/(?P<dataset>[^/]+)/(?P<direction>\w+_to_\w+)/(?P<name>recall|chance)@(?P<k>\d+)$"
)
FEW_SHOT_KEY = re.compile(r"^few_shot/(?P<dataset>[^/]+)/k(?P<k>\d+)/(?P<name>balanced_accuracy|ci95|chance)$")
# `zero_shot/{dataset}/...` and `cross_modality/{task}/...`, written by `classification_keys`.
CLASSIFICATION_KEY = re.compile(
    r"^(?P<family>zero_shot|cross_modality)/(?P<dataset>[^/]+)/(?P<name>balanced_accuracy|auroc)$"
)
RSUM_KEY = re.compile(r"^retrieval/rsum_(?P<modality>\w+)$")


def retrieval_prefix(dataset: str, direction: str) -> str:
    """`retrieval/{dataset}/{direction}`: the prefix of `.../recall@K` and `.../chance@K`."""
    return f"retrieval/{dataset}/{direction}"


def classification_keys(prefix: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """
    `{prefix}/balanced_accuracy` (prediction = the class of highest score, the first on a tie) and `{prefix}/auroc`
    (two classes: of the score difference, class 1 minus class 0; more: macro one-vs-rest; left out with a warning
    when the split holds one class only), each with a `/chance` sibling.

    Args:
        prefix: e.g. `zero_shot/ptbxl`.
        scores: `[n, C]` class scores.
        targets: `[n]` true classes in `range(C)`.
    """
    results = {
        f"{prefix}/balanced_accuracy": float(balanced_accuracy(scores.argmax(axis=1), targets)),
        f"{prefix}/balanced_accuracy/chance": chance_balanced_accuracy(targets),
    }
    if len(np.unique(targets)) > 1:
        results[f"{prefix}/auroc"] = macro_auroc(
            scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores, targets
        )
        results[f"{prefix}/auroc/chance"] = CHANCE_AUROC
    else:
        logger.warning("%s: one class only among %d samples, no AUROC", prefix, len(targets))
    return results


# ---- embedding -------------------------------------------------------------------------------------------------


def modality_of(dataset: datasets.Dataset) -> str:
    """`"cxr"` for a dataset with an `image` column, `"ecg"` for one with `ecg` or `ecg_path`.

    Raises:
        ValueError: for a dataset with neither.
    """
    columns = set(dataset.column_names)
    if "image" in columns:
        return "cxr"
    if columns & {"ecg", "ecg_path"}:
        return "ecg"
    raise ValueError(f"cannot tell the modality of a dataset with columns {sorted(columns)}: no image, ecg or ecg_path")


def model_modalities(model: MedBindModel) -> tuple[str, ...]:
    """The modalities a model embeds: CXR and ECG, or ECG alone for ECG-CLIP."""
    return MODALITIES if model.config.has_cxr else ("ecg",)


def modality_inputs(processor: MedBindProcessor, batch: Mapping[str, list], modality: str) -> dict[str, torch.Tensor]:
    """
    A batch of dataset rows (columns as lists) -> the model inputs of that modality.

    Returns:
        `{"pixel_values": [B, 3, H, W]}` for CXR, `{"ecg_values": [B, 12, T]}` for ECG (record paths carry their own
        rate; arrays are resampled from their row's `sampling_rate`, one processor call per rate).
    """
    if modality == "cxr":
        return {"pixel_values": processor(images=batch["image"], return_tensors="pt")["pixel_values"]}
    signals = batch["ecg_path"] if "ecg_path" in batch else batch["ecg"]
    rates = batch.get("sampling_rate") or [None] * len(signals)
    return {"ecg_values": processed_ecgs(processor, signals, rates)}


def _input_columns(dataset: datasets.Dataset, modality: str) -> list[str]:
    if modality == "cxr":
        return ["image"]
    signal = "ecg_path" if "ecg_path" in dataset.column_names else "ecg"
    return [signal] + (["sampling_rate"] if "sampling_rate" in dataset.column_names else [])


def _batches(dataset: datasets.Dataset, columns: Sequence[str], batch_size: int, desc: str) -> Iterator[dict]:
    subset = dataset.select_columns(list(columns))
    yield from tqdm(subset.iter(batch_size=batch_size), total=math.ceil(len(subset) / batch_size), desc=desc)


class Embedder:
    """
    Embeds datasets of one modality, and texts, with a model and its processor: L2-normalised `[N, d]` float32 on
    the CPU, each pass with a progress bar.

    With `cache_dir`, embeddings are stored as safetensors files named by a hash of the model (weights, config,
    processor and vocabulary) and of the dataset (its `datasets` fingerprint) or the texts, so a second evaluation
    of the same model on the same data (another task, another run) reads them instead of embedding again. Within
    one `Embedder`, a dataset is embedded once however many tasks use it: do not train the model in between.

    Args:
        model: a `MedBindModel` (in eval mode while embedding; its training mode is restored).
        processor: its `MedBindProcessor`.
        batch_size: samples per forward pass.
        device: where to run the model (default: where its parameters are).
        cache_dir: folder of the on-disk cache, None for none.
    """

    def __init__(
        self,
        model: MedBindModel,
        processor: MedBindProcessor,
        batch_size: int = 64,
        device: torch.device | str | None = None,
        cache_dir: str | Path | None = None,
    ):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.modalities = model_modalities(model)
        self._memory: dict[str, torch.Tensor] = {}
        self._rows: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
        self._model_hash: str | None = None

    def embed(self, dataset: datasets.Dataset, modality: str, name: str = "") -> torch.Tensor:
        """`[len(dataset), d]` embeddings of a CXR or ECG dataset's samples.

        Raises:
            ValueError: when the model has no tower for `modality`.
        """
        if modality not in self.modalities:
            raise ValueError(f"this model embeds {self.modalities}, not {modality!r}")
        key = ("dataset", modality, dataset._fingerprint)

        def compute() -> torch.Tensor:
            batches = _batches(
                dataset, _input_columns(dataset, modality), self.batch_size, f"embedding {name} {modality.upper()}"
            )
            features = getattr(self.model, f"get_{modality}_features")
            return self._run(
                lambda batch: features(**self._to_device(modality_inputs(self.processor, batch, modality))).pooler_output,
                batches,
            )

        return self._cached(key, compute)

    def embed_rows(self, dataset: datasets.Dataset, rows: Sequence[int], modality: str, name: str = "") -> torch.Tensor:
        """
        `[len(rows), d]` embeddings of some rows of a dataset (support samples drawn from a large train split): only
        the rows this `Embedder` has not embedded yet, for any task, are embedded (and cached as that selection).
        """
        known = self._rows.setdefault((dataset._fingerprint, modality), {})
        if missing := sorted({int(row) for row in rows} - known.keys()):
            known.update(zip(missing, self.embed(dataset.select(missing), modality, name), strict=True))
        if len(rows) == 0:
            return torch.zeros(0, self.model.config.projection_dim)
        return torch.stack([known[int(row)] for row in rows])

    def embed_texts(self, texts: Sequence[str], name: str = "") -> torch.Tensor:
        """`[len(texts), d]` embeddings of reports or prompts (cut to the processor's `max_words`, as in training)."""
        texts = list(texts)
        key = ("texts", hashlib.sha256(json.dumps(texts).encode()).hexdigest())

        def compute() -> torch.Tensor:
            chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
            batches = tqdm(chunks, desc=f"embedding {name} text")
            return self._run(
                lambda chunk: self.model.get_text_features(
                    **self._to_device(self.processor(text=chunk, return_tensors="pt"))
                ).pooler_output,
                batches,
            )

        return self._cached(key, compute)

    def _to_device(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(self.device) for key, value in inputs.items()}

    @torch.no_grad()
    def _run(self, features: Callable[[Any], torch.Tensor], batches: Iterable[Any]) -> torch.Tensor:
        """`features(batch)` for every batch, on `self.device`, in eval mode: `[N, d]` float32 on the CPU."""
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [features(batch).float().cpu() for batch in batches]
        finally:
            self.model.train(was_training)
        return torch.cat(parts) if parts else torch.zeros(0, self.model.config.projection_dim)

    def _cached(self, key: tuple[str, ...], compute) -> torch.Tensor:
        memory_key = "/".join(key)
        if memory_key in self._memory:
            return self._memory[memory_key]
        path = self.cache_dir / f"{self._hash(key)}.safetensors" if self.cache_dir else None
        if path is not None and path.is_file():
            embeds = load_file(path)["embeds"]
        else:
            embeds = compute()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                staging = path.with_suffix(f".tmp{os.getpid()}")
                save_file({"embeds": embeds.contiguous()}, staging, metadata={"key": memory_key})
                os.replace(staging, path)  # a reader never sees half a file
        self._memory[memory_key] = embeds
        return embeds

    def _hash(self, key: tuple[str, ...]) -> str:
        if self._model_hash is None:
            digest = hashlib.sha256(self.model.config.to_json_string().encode())
            digest.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
            digest.update(json.dumps(sorted(self.processor.tokenizer.get_vocab().items())).encode())
            for parameter_name, tensor in sorted(self.model.state_dict().items()):
                digest.update(parameter_name.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._model_hash = digest.hexdigest()
        return hashlib.sha256("/".join((self._model_hash, *key)).encode()).hexdigest()[:32]


# ---- labels and prompts ----------------------------------------------------------------------------------------


def _label_column(dataset: datasets.Dataset) -> tuple[str, datasets.ClassLabel]:
    for column in ("labels", "label"):
        if column in dataset.column_names:
            feature = dataset.features[column]
            return column, feature.feature if column == "labels" else feature
    raise ValueError(f"no `label` or `labels` column among {dataset.column_names}")


def class_names(dataset: datasets.Dataset) -> list[str]:
    """The classes of a dataset's single-label `label` or multi-label `labels` `ClassLabel` column.

    Raises:
        ValueError: when the dataset has neither column.
    """
    return list(_label_column(dataset)[1].names)


def row_labels(dataset: datasets.Dataset) -> list[list[str]]:
    """Each row's class names, from a single-label `label` or a multi-label `labels` `ClassLabel` column.

    Raises:
        ValueError: when the dataset has neither column.
    """
    column, feature = _label_column(dataset)
    values = dataset[column]
    return [[feature.names[i] for i in value] if column == "labels" else [feature.names[value]] for value in values]


def single_class_rows(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """
    The rows with exactly one of `classes` among their labels (the multi-label policy of this module).

    Returns:
        `(rows, targets)`: the kept row indices and each one's class as an index into `classes`.
    """
    index = {name: i for i, name in enumerate(classes)}
    kept = [(row, [index[name] for name in names if name in index]) for row, names in enumerate(labels)]
    kept = [(row, found[0]) for row, found in kept if len(found) == 1]
    rows = np.array([row for row, _ in kept], dtype=np.int64)
    return rows, np.array([target for _, target in kept], dtype=np.int64)


@dataclass(frozen=True)
class PromptSet:
    """
    The prompts of one dataset's classes, read from a prompt file (format: `training/prompts/ecg_superclasses.yaml`).

    Attributes:
        classes: class name (as in the dataset) -> its prompts, in file order.
        prompts_per_class: how many of a class's prompts to draw (seeded) and average; None for all.
    """

    classes: dict[str, tuple[str, ...]]
    prompts_per_class: int | None = None

    def sample(self, seed: int) -> dict[str, list[str]]:
        """Each class's prompts: all of them, or `prompts_per_class` drawn without replacement (seeded)."""
        rng = np.random.default_rng(seed)
        return {
            name: list(prompts)
            if self.prompts_per_class is None or self.prompts_per_class >= len(prompts)
            else [prompts[i] for i in sorted(rng.choice(len(prompts), self.prompts_per_class, replace=False))]
            for name, prompts in self.classes.items()
        }


def read_prompt_file(path: str | Path) -> tuple[list[str], PromptSet]:
    """
    One prompt file (format: `training/prompts/ecg_superclasses.yaml`; JSON is YAML too).

    Args:
        path: the file.

    Returns:
        `(dataset names, prompts)`: the `datasets:` it names (its file stem when it names none) and its `PromptSet`.

    Raises:
        ValueError: a file that cannot be read or parsed, has unknown keys, no classes, or an empty prompt.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read a prompt file: {error}") from error
    if isinstance(spec, dict) and (unknown := set(spec) - _PROMPT_FILE_KEYS):
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; a prompt file has {sorted(_PROMPT_FILE_KEYS)}")
    if not isinstance(spec, dict) or not isinstance(spec.get("classes"), dict):
        raise ValueError(f"{path}: a prompt file needs a `classes:` mapping of class -> prompt or list of prompts")
    template = spec.get("template", "{label}")
    classes = {
        str(name): tuple(template.format(label=phrase) for phrase in ([value] if isinstance(value, str) else value))
        for name, value in spec["classes"].items()
    }
    if not classes or not all(prompts and all(p.strip() for p in prompts) for prompts in classes.values()):
        raise ValueError(f"{path}: every class needs at least one non-empty prompt, got {classes}")
    return list(spec.get("datasets") or [path.stem]), PromptSet(classes, spec.get("prompts_per_class"))


def load_prompt_sets(directory: str | Path | None = None) -> dict[str, PromptSet]:
    """
    Every prompt file (`*.yaml`) of a folder, by dataset name.

    Args:
        directory: a folder of prompt files; None for the ones shipped in the package (`training/prompts`).

    Returns:
        `{dataset name: PromptSet}`.

    Raises:
        ValueError: a malformed file (`read_prompt_file`), or a dataset named by two files.
    """
    folder = Path(directory) if directory is not None else PROMPTS
    sets: dict[str, PromptSet] = {}
    for path in sorted(folder.iterdir(), key=lambda item: item.name):
        if not path.name.endswith((".yaml", ".yml")):
            continue
        dataset_names, prompt_set = read_prompt_file(path)
        for dataset_name in dataset_names:
            if dataset_name in sets:
                raise ValueError(f"{path}: prompts for {dataset_name!r} are already given by another file")
            sets[dataset_name] = prompt_set
    return sets


def prompt_sets(prompt_dir: str | Path | None = None) -> dict[str, PromptSet]:
    """The packaged prompt sets, those of `prompt_dir`'s files replacing the packaged ones of the datasets they name."""
    return load_prompt_sets() | (load_prompt_sets(prompt_dir) if prompt_dir is not None else {})


# ---- tasks on embeddings ---------------------------------------------------------------------------------------


def zero_shot_scores(embeds: torch.Tensor, class_prompt_embeds: Sequence[torch.Tensor]) -> np.ndarray:
    """
    Zero-shot class scores: the cosine similarity of each sample to each class's prompts, averaged over the prompts,

        s_c(x) = 1 / |P_c| * sum_{p in P_c} x . t_p  =  x . mean_{p in P_c} t_p

    (the paper averages the similarities of COVID's sampled prompts; by linearity that is the similarity to the
    mean prompt embedding, which is what is computed).

    Args:
        embeds: `[n, d]` L2-normalised sample embeddings.
        class_prompt_embeds: per class, `[P_c, d]` L2-normalised prompt embeddings.

    Returns:
        `[n, C]` scores.
    """
    prototypes = torch.stack([prompts.mean(dim=0) for prompts in class_prompt_embeds])
    return (embeds @ prototypes.T).numpy()


def prototype_scores(
    query_embeds: torch.Tensor, support_embeds: torch.Tensor, support_targets: np.ndarray
) -> np.ndarray:
    """
    Cross-modality zero-shot scores (paper Table 3): the cosine similarity of each query to each class prototype,
    the normalised mean of that class's support embeddings (from the other modality),

        s_c(q) = q . mu_c / ||mu_c||,   mu_c = mean_{i : y_i = c} z_i

    Args:
        query_embeds: `[n, d]` L2-normalised (e.g. CXRs).
        support_embeds: `[m, d]` L2-normalised (e.g. ECGs), with `support_targets` `[m]` in `range(C)`.

    Returns:
        `[n, C]` scores.
    """
    num_classes = int(support_targets.max()) + 1
    prototypes = torch.stack(
        [support_embeds[torch.from_numpy(support_targets == c)].mean(dim=0) for c in range(num_classes)]
    )
    return (query_embeds @ torch.nn.functional.normalize(prototypes, dim=-1).T).numpy()


def support_sets(targets: np.ndarray, num_classes: int, shots: int, num_sets: int, seed: int) -> np.ndarray:
    """
    Seeded few-shot support sets, nested across K: set s of K shots is the first K of set s's `shots` per class, so
    every K sees the same draws and the curves over K are not blurred by different samples.

    Args:
        targets: `[M]` classes of the support pool.
        num_classes: C; every class must have at least `shots` rows.
        shots: the largest K.
        num_sets: how many sets.
        seed: the seed of set s is `(seed, s)`.

    Returns:
        `[num_sets, C, shots]` row indices into `targets`.

    Raises:
        ValueError: when a class has fewer than `shots` rows.
    """
    pools = [np.flatnonzero(targets == c) for c in range(num_classes)]
    if (smallest := min(len(pool) for pool in pools)) < shots:
        raise ValueError(f"{shots} shots per class need as many support rows per class; the smallest has {smallest}")
    return np.stack(
        [
            np.stack([np.random.default_rng([seed, s]).permutation(pool)[:shots] for pool in pools])
            for s in range(num_sets)
        ]
    )


def few_shot_balanced_accuracy(
    support_embeds: torch.Tensor,
    sets: np.ndarray,
    test_embeds: torch.Tensor,
    test_targets: np.ndarray,
    shots: Sequence[int] = FEW_SHOT_SHOTS,
    regularization: float = 1.0,
) -> dict[int, np.ndarray]:
    """
    Few-shot linear probes (paper Figure 3): per support set and K, a multinomial logistic regression (scikit-learn,
    L2 penalty of inverse strength `regularization`) on the frozen embeddings of K samples per class, scored on every
    test sample. The probes' weights are stacked so that all test predictions are one batched product.

    Args:
        support_embeds: `[M, d]` embeddings of the support rows.
        sets: `[S, C, K_max]` indices into `support_embeds` (`support_sets`); class c's rows have target c.
        test_embeds: `[n, d]`; `test_targets` `[n]` in `range(C)`.
        shots: the K values (at most K_max).
        regularization: scikit-learn's `C`.

    Returns:
        `{K: [S] balanced accuracies in percent}`.
    """
    num_sets, num_classes, _ = sets.shape
    features, test = support_embeds.numpy(), test_embeds.numpy()
    results = {}
    for k in shots:
        targets = np.repeat(np.arange(num_classes), k)
        weights = np.zeros((features.shape[1], num_sets, num_classes), dtype=np.float32)
        biases = np.zeros((num_sets, num_classes), dtype=np.float32)
        # A probe is a few milliseconds of BLAS on a K x C by d problem; more BLAS threads only spin against each
        # other (and against other processes): one thread is several times faster.
        with threadpool_limits(limits=1):
            for s in range(num_sets):
                probe = LogisticRegression(C=regularization, max_iter=1000)
                probe.fit(features[sets[s, :, :k].reshape(-1)], targets)
                # A binary probe keeps one weight vector: the positive class's logit, against 0 for the negative.
                weights[:, s, -len(probe.coef_) :] = probe.coef_.T
                biases[s, -len(probe.intercept_) :] = probe.intercept_
        # Every probe on every test sample as one matrix product per block of test rows (`[rows, S * C]`).
        predictions = np.concatenate(
            [
                (block @ weights.reshape(len(weights), -1)).reshape(len(block), num_sets, num_classes) + biases
                for block in np.array_split(test, max(1, len(test) // FEW_SHOT_TEST_BLOCK))
            ]
        ).argmax(axis=-1)
        results[k] = balanced_accuracy(predictions.T, test_targets)
    return results


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """The mean of `values` and the half-width of its normal 95% confidence interval, 1.96 * sd / sqrt(n)."""
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


@dataclass
class TsneMap:
    """2-D t-SNE coordinates of CXR and ECG embeddings (paper Figure 2, left) and what the map shows.

    Attributes:
        points: `[n, 2]`.
        modalities: per point, `"cxr"` or `"ecg"`.
        classes: per point, its single class (`single_class_rows`) or `"other"`.
        agreement: `{"modality": (share, chance), "class": (share, chance)}`: among each point's nearest
            `TSNE_NEIGHBOURS` neighbours on the map, the share with the same modality / class (percent), and what
            a map with no structure would give (two random other points agree).
    """

    points: np.ndarray
    modalities: list[str]
    classes: list[str]
    agreement: dict[str, tuple[float, float]] = field(default_factory=dict)


def neighbour_agreement(
    points: np.ndarray, groups: Sequence[str], neighbours: int = TSNE_NEIGHBOURS
) -> tuple[float, float]:
    """
    The share of each point's nearest neighbours in its own group, in percent, and its chance level
    `sum_g n_g (n_g - 1) / (n (n - 1))` (the probability that another point drawn at random shares the group).
    """
    groups = np.asarray(groups)
    index = NearestNeighbors(n_neighbors=neighbours + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]
    share = 100.0 * float((groups[index] == groups[:, None]).mean())
    counts = np.unique(groups, return_counts=True)[1]
    chance = 100.0 * float((counts * (counts - 1)).sum() / (len(groups) * (len(groups) - 1)))
    return share, chance


def tsne_map(embeds: Mapping[str, torch.Tensor], classes: Mapping[str, Sequence[str]], seed: int = 0) -> TsneMap:
    """
    t-SNE of the CXR and ECG embeddings together (scikit-learn, PCA initialisation, perplexity 30 or less).

    Args:
        embeds: `{modality: [n_m, d]}`.
        classes: `{modality: [n_m] class names}`.
        seed: t-SNE's random state.
    """
    stacked = torch.cat([embeds[m] for m in embeds]).numpy()
    modalities = [m for m in embeds for _ in range(len(embeds[m]))]
    labels = [name for m in embeds for name in classes[m]]
    perplexity = min(30.0, (len(stacked) - 1) / 3)
    # One OpenMP thread: on a shared machine t-SNE's threads spin against other processes' (20x slower measured on
    # 2 busy cores), and on a free one a thousand points take seconds anyway.
    with threadpool_limits(limits=1):
        points = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(stacked)
    agreement = {"modality": neighbour_agreement(points, modalities), "class": neighbour_agreement(points, labels)}
    return TsneMap(points, modalities, labels, agreement)


# ---- retrieval over datasets -----------------------------------------------------------------------------------


def _retrieval_keys(prefix: str, queries, candidates, query_groups, candidate_groups, device) -> dict[str, float]:
    recalls = recall_at_k(queries, candidates, query_groups, candidate_groups, RECALL_KS, device=device)
    chances = chance_recall_at_k(query_groups, candidate_groups, RECALL_KS)
    return {**recall_keys(prefix, recalls), **recall_keys(prefix, chances, name="chance")}


def modality_text_retrieval(
    embedder: Embedder, name: str, dataset: datasets.Dataset, modality: str, embeds: torch.Tensor
) -> dict[str, float]:
    """
    `retrieval/{name}/{modality}_to_text/{recall,chance}@K`: each sample's report among the split's reports
    (identical reports are all hits); no keys for a dataset without a `text` column.

    Args:
        embedder: embeds the texts.
        name: the dataset's name in the keys.
        dataset: the evaluated split; `embeds` `[len(dataset), d]` its samples' embeddings.
    """
    if "text" not in dataset.column_names:
        return {}
    texts = dataset["text"]
    groups = torch.tensor(text_group_ids(texts, max_words=embedder.processor.max_words))
    candidates = embedder.embed_texts(texts, name)
    prefix = retrieval_prefix(name, f"{modality}_to_text")
    return _retrieval_keys(prefix, embeds, candidates, groups, groups, embedder.device)


def pair_retrieval(
    cxr_embeds: torch.Tensor, ecg_embeds: torch.Tensor, pairs: Sequence[tuple[int, int]], device=None, name: str = PAIRS
) -> dict[str, float]:
    """
    `retrieval/pairs/{cxr_to_ecg,ecg_to_cxr}/{recall,chance}@K` over a split's disjoint visit pairs: the query is a
    paired CXR (ECG), the gallery every paired ECG (CXR), the hit its own visit's partner.
    """
    cxr_rows, ecg_rows, groups = pair_groups(pairs)
    cxr, ecg = cxr_embeds[cxr_rows], ecg_embeds[ecg_rows]
    return {
        **_retrieval_keys(retrieval_prefix(name, "cxr_to_ecg"), cxr, ecg, groups, groups, device),
        **_retrieval_keys(retrieval_prefix(name, "ecg_to_cxr"), ecg, cxr, groups, groups, device),
    }


def rsum(results: Mapping[str, float]) -> dict[str, float]:
    """
    The paper's RSUM (Table 2): per modality m, the sum over datasets of R@1 + R@10 of m -> text retrieval, as
    `retrieval/rsum_cxr`, `retrieval/rsum_ecg` (only for modalities with a result).
    """
    sums: dict[str, float] = {}
    for key, value in results.items():
        match = RETRIEVAL_KEY.match(key)
        if (
            match
            and match["name"] == "recall"
            and int(match["k"]) in RSUM_KS
            and match["direction"].endswith("_to_text")
        ):
            modality = match["direction"].removesuffix("_to_text")
            sums[f"retrieval/rsum_{modality}"] = sums.get(f"retrieval/rsum_{modality}", 0.0) + value
    return sums


def recall_sum(results: Mapping[str, float]) -> float:
    """The sum of every recall@K of every direction and dataset: a selection metric (not the paper's RSUM)."""
    return sum(value for key, value in results.items() if (m := RETRIEVAL_KEY.match(key)) and m["name"] == "recall")


@dataclass
class RetrievalSplit:
    """One split of a DATA folder: its CXR and ECG datasets (either may be None) and its (CXR row, ECG row) pairs."""

    cxr: datasets.Dataset | None = None
    ecg: datasets.Dataset | None = None
    pairs: Sequence[tuple[int, int]] = field(default_factory=list)


def first_rows(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    """The first `limit` rows of `dataset` (all of them for None or 0), for quick checks (`--max_samples`)."""
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def retrieval_split(
    data: Mapping[str, datasets.DatasetDict | None],
    split: str,
    limit: int | None = None,
    with_cxr: bool = True,
    with_pairs: bool = True,
) -> RetrievalSplit:
    """
    One split of a DATA folder's `cxr`, `ecg` and `pairs` DatasetDicts (missing names or splits: None), the CXR and
    ECG datasets cut to their first `limit` rows, and their disjoint visit pairs (`pair_rows`; pairs whose studies
    fall outside the kept rows are dropped). `with_cxr=False` leaves the CXRs out (ECG-CLIP); `with_pairs=False`
    leaves the pairs out, for a caller that reads only the datasets (matching pairs reads the whole pair split).
    """

    def part(name: str, cut: int | None) -> datasets.Dataset | None:
        dataset_dict = data.get(name)
        if dataset_dict is None or split not in dataset_dict:
            return None
        return first_rows(dataset_dict[split], cut)

    cxr, ecg = part("cxr", limit) if with_cxr else None, part("ecg", limit)
    pairs = part(PAIRS, None) if with_pairs else None
    return RetrievalSplit(
        cxr, ecg, pair_rows(cxr, ecg, pairs) if cxr is not None and ecg is not None and pairs is not None else []
    )


def split_retrieval(embedders: Mapping[str, Embedder], split: RetrievalSplit) -> dict[str, float]:
    """
    Retrieval on one split of a DATA folder: `cxr` and `ecg` to their reports, and CXR <-> ECG over its visit pairs,
    with RSUM. `embedders` maps each modality to the embedder of its model (the same one for MedBind; two for the
    encoder zoo).
    """
    results: dict[str, float] = {}
    embeds = {}
    for modality in MODALITIES:
        dataset = getattr(split, modality)
        if dataset is not None and len(dataset) > 0 and modality in embedders:
            embeds[modality] = embedders[modality].embed(dataset, modality, modality)
            results |= modality_text_retrieval(embedders[modality], modality, dataset, modality, embeds[modality])
    if split.pairs and len(embeds) == 2:
        results |= pair_retrieval(embeds["cxr"], embeds["ecg"], split.pairs, embedders["cxr"].device)
    return results | rsum(results)


def validation_retrieval(
    model: MedBindModel, processor: MedBindProcessor, split: RetrievalSplit, batch_size: int = 64, device=None
) -> dict[str, float]:
    """
    The Trainer's validation metrics: `split_retrieval`'s keys and `recall_sum`, the checkpoint-selection metric.
    Nothing is cached: the weights change between calls.
    """
    embedder = Embedder(model, processor, batch_size=batch_size, device=device)
    results = split_retrieval({modality: embedder for modality in embedder.modalities}, split)
    return results | {"recall_sum": recall_sum(results)}


# ---- tasks on datasets -----------------------------------------------------------------------------------------


def zero_shot_results(
    embedder: Embedder, name: str, dataset: datasets.Dataset, embeds: torch.Tensor, prompt_set: PromptSet, seed: int = 0
) -> dict[str, float]:
    """
    `zero_shot/{name}/{balanced_accuracy,auroc}` (+ `/chance`): `zero_shot_scores` of the single-class rows of the
    prompt file's classes (`single_class_rows`), with each class's prompts drawn by `PromptSet.sample(seed)`.

    Args:
        dataset: the evaluated split, with a `label` or `labels` column; `embeds` `[len(dataset), d]`.

    Raises:
        ValueError: when the prompt file names a class the dataset does not have (a typo would silently drop it).
    """
    classes = list(prompt_set.classes)
    if unknown := sorted(set(classes) - set(class_names(dataset))):
        raise ValueError(f"the prompts of {name!r} name classes {unknown} that are not among {class_names(dataset)}")
    rows, targets = single_class_rows(row_labels(dataset), classes)
    logger.info("zero-shot %s: %d of %d rows have exactly one of %s", name, len(rows), len(dataset), classes)
    if len(rows) == 0:
        return {}
    prompts = prompt_set.sample(seed)
    prompt_embeds = embedder.embed_texts([prompt for c in classes for prompt in prompts[c]], f"{name} prompts")
    per_class = torch.split(prompt_embeds, [len(prompts[c]) for c in classes])
    return classification_keys(f"zero_shot/{name}", zero_shot_scores(embeds[rows], per_class), targets)


def few_shot_results(
    embedder: Embedder,
    name: str,
    support: datasets.Dataset,
    evaluated: datasets.Dataset,
    evaluated_embeds: torch.Tensor,
    classes: Sequence[str],
    shots: Sequence[int] = FEW_SHOT_SHOTS,
    num_sets: int = 300,
    seed: int = 0,
    regularization: float = 1.0,
) -> dict[str, float]:
    """
    `few_shot/{name}/k{K}/{balanced_accuracy,ci95,chance}`: the mean balanced accuracy of `num_sets` probes per K
    (`few_shot_balanced_accuracy`) on the evaluated split's single-class rows, the half-width of its 95% confidence
    interval (`mean_ci95`: how precisely the mean is known, not the spread between support sets), and chance.
    Support sets are drawn from `support`'s single-class rows; only the rows they use are embedded. A class without
    any support row is left out (with its test rows), and so is a K larger than the smallest class's support pool
    (both with a warning).

    Args:
        support: the split the K shots come from (train); `evaluated` the scored split, `evaluated_embeds` its
            `[len(evaluated), d]` embeddings.
        classes: the classes (the prompt file's, or the dataset's).
    """
    modality = modality_of(support)
    support_labels = row_labels(support)
    _, pool_targets = single_class_rows(support_labels, classes)
    if absent := [name for c, name in enumerate(classes) if not (pool_targets == c).any()]:
        # A probe cannot learn a class it never sees: score the others (their test rows only).
        logger.warning("few-shot %s: no single-class support row of %s; those classes are left out", name, absent)
        classes = [c for c in classes if c not in absent]
    test_rows, test_targets = single_class_rows(row_labels(evaluated), classes)
    pool_rows, pool_targets = single_class_rows(support_labels, classes)
    if len(classes) < 2:
        return {}
    smallest = min(int((pool_targets == c).sum()) for c in range(len(classes)))
    usable = [k for k in shots if k <= smallest]
    if len(usable) < len(shots):
        logger.warning("few-shot %s: the smallest class has %d support rows; K > %d left out", name, smallest, smallest)
    if not usable or len(test_rows) == 0:
        return {}
    sets = support_sets(pool_targets, len(classes), max(usable), num_sets, seed)
    needed = np.unique(sets)
    support_embeds = embedder.embed_rows(support, pool_rows[needed], modality, f"{name} support")
    accuracies = few_shot_balanced_accuracy(
        support_embeds, np.searchsorted(needed, sets), evaluated_embeds[test_rows], test_targets, usable, regularization
    )
    results = {}
    for k, values in accuracies.items():
        mean, half_width = mean_ci95(values)
        results |= {
            f"few_shot/{name}/k{k}/balanced_accuracy": mean,
            f"few_shot/{name}/k{k}/ci95": half_width,
            f"few_shot/{name}/k{k}/chance": chance_balanced_accuracy(test_targets),
        }
    return results


def _per_class_sample(targets: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Sorted row indices: up to `size` rows of each class of `targets`, drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(targets == c))[:size] for c in np.unique(targets)]
    return np.sort(np.concatenate(chosen))


def cross_modality_results(
    embedders: Mapping[str, Embedder],
    evaluated: RetrievalSplit,
    support: RetrievalSplit,
    support_size: int | None = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """
    `cross_modality/{task}/{balanced_accuracy,auroc}` (+ `/chance`) for each of `CROSS_MODALITY_TASKS`: the queries
    are the evaluated split's paired samples of the query modality, each labelled by its visit partner (an ECG's HYP,
    a CXR's Cardiomegaly); the prototypes (`prototype_scores`) come from up to `support_size` labelled samples per
    class (positive, negative) of the support split's other modality, so no test label is used.

    Args:
        embedders: `{modality: Embedder}` (one model, or the encoder zoo's two).
        evaluated: the evaluated split with its visit pairs.
        support: the split the prototypes' samples come from (train).
    """
    results: dict[str, float] = {}
    for task_name, task in CROSS_MODALITY_TASKS.items():
        query_data, partner_data, support_data = (
            getattr(evaluated, task.query),
            getattr(evaluated, task.support),
            getattr(support, task.support),
        )
        if not evaluated.pairs or any(d is None for d in (query_data, partner_data, support_data)):
            continue
        query_side = MODALITIES.index(task.query)
        query_rows = [pair[query_side] for pair in evaluated.pairs]
        partner_labels = row_labels(partner_data)
        targets = np.array([task.label in partner_labels[pair[1 - query_side]] for pair in evaluated.pairs], dtype=int)
        support_targets = np.array([task.label in labels for labels in row_labels(support_data)], dtype=int)
        if len(np.unique(support_targets)) < 2 or len(np.unique(targets)) < 2:
            logger.warning("cross-modality %s: needs positive and negative %s samples; skipped", task_name, task.label)
            continue
        chosen = _per_class_sample(support_targets, support_size, seed)
        support_embeds = embedders[task.support].embed_rows(
            support_data, chosen, task.support, f"{task.support} support"
        )
        query_embeds = embedders[task.query].embed(query_data, task.query, task.query)[query_rows]
        scores = prototype_scores(query_embeds, support_embeds, support_targets[chosen])
        results |= classification_keys(f"cross_modality/{task_name}", scores, targets)
    return results


__all__ = [
    "CLASSIFICATION_KEY",
    "RSUM_KEY",
    "CROSS_MODALITY_TASKS",
    "FEW_SHOT_SHOTS",
    "TASKS",
    "CrossModalityTask",
    "Embedder",
    "PromptSet",
    "RetrievalSplit",
    "TsneMap",
    "class_names",
    "classification_keys",
    "cross_modality_results",
    "few_shot_results",
    "few_shot_balanced_accuracy",
    "first_rows",
    "load_prompt_sets",
    "mean_ci95",
    "modality_inputs",
    "modality_of",
    "modality_text_retrieval",
    "pair_retrieval",
    "prototype_scores",
    "recall_sum",
    "retrieval_prefix",
    "prompt_sets",
    "read_prompt_file",
    "retrieval_split",
    "row_labels",
    "rsum",
    "single_class_rows",
    "split_retrieval",
    "support_sets",
    "tsne_map",
    "validation_retrieval",
    "zero_shot_results",
    "zero_shot_scores",
]
