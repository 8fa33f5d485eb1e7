"""MEDBind's evaluation (paper Section 3 and Tables 2-3, Figures 2-3): one implementation for every caller.

`medbind_training.evaluation` runs all of it on a saved model's test split; `MedBindTrainer.evaluate` runs the retrieval
part on the validation split (`validation_retrieval`, which picks the best checkpoint). Every task is a function of
L2-normalised embeddings from a `TaskEmbedder` (MedBind's `Embedder`, or a baseline's `BaselineEmbedder`): retrieval
(`modality_text_retrieval`, `pair_retrieval`, the paper's RSUM `rsum`), zero-shot (`zero_shot_scores`), few-shot
(`few_shot_balanced_accuracy`), cross-modality zero-shot (`prototype_scores`) and t-SNE (`tsne_map`).

Multi-label rows (MIMIC's and the demo's): for classification against a class list (zero-shot, few-shot, t-SNE
colours), a row counts when exactly one of the listed classes is among its labels, as the paper uses single-class
ECGs; the others are left out and the numbers kept are logged. The binary cross-modality tasks need no such rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from modeling_medbind import MedBindModel, MedBindProcessor
from modeling_medbind.configuration_medbind import MODALITIES

from .embedding import Embedder, TaskEmbedder, modality_of
from .metrics import balanced_accuracy, chance_balanced_accuracy
from .prompt_files import PromptSet
from .results_keys import classification_keys, recall_sum, retrieval_prefix, rsum
from .retrieval import RetrievalProtocol, pair_groups, protocol_recall_at_k, recall_keys
from .splits import PAIRS, RetrievalSplit
from .text_groups import text_group_ids

logger = logging.getLogger(__name__)

TASKS = ("retrieval", "zero_shot", "few_shot", "cross_modality", "tsne")
FEW_SHOT_SHOTS = (1, 2, 4, 8, 16)  # paper Figure 3
TSNE_NEIGHBOURS = 5
FEW_SHOT_TEST_BLOCK = 8192  # test rows scored at once by all probes: 8192 x 300 sets x C classes of float32


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


# ---- labels ----------------------------------------------------------------------------------------------------


def _label_column(dataset: datasets.Dataset) -> tuple[str, datasets.ClassLabel]:
    for column in ("labels", "label"):
        if column in dataset.column_names:
            feature = dataset.features[column]
            return column, feature.feature if column == "labels" else feature
    raise ValueError(f"no `label` or `labels` column among {dataset.column_names}")


def class_names(dataset: datasets.Dataset) -> list[str]:
    """The classes of a dataset's single-label `label` or multi-label `labels` `ClassLabel` column."""
    return list(_label_column(dataset)[1].names)


def row_labels(dataset: datasets.Dataset) -> list[list[str]]:
    """Each row's class names, from a single-label `label` or a multi-label `labels` `ClassLabel` column."""
    column, feature = _label_column(dataset)
    values = dataset[column]
    return [[feature.names[i] for i in value] if column == "labels" else [feature.names[value]] for value in values]


def single_class_rows(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The rows with exactly one of `classes` among their labels (the multi-label policy of this module): `(rows,
    targets)`, the kept row indices and each one's class as an index into `classes`.
    """
    index = {name: i for i, name in enumerate(classes)}
    kept = [(row, [index[name] for name in names if name in index]) for row, names in enumerate(labels)]
    kept = [(row, found[0]) for row, found in kept if len(found) == 1]
    rows = np.array([row for row, _ in kept], dtype=np.int64)
    return rows, np.array([target for _, target in kept], dtype=np.int64)


# ---- tasks on embeddings ---------------------------------------------------------------------------------------


def zero_shot_scores(embeds: torch.Tensor, class_prompt_embeds: Sequence[torch.Tensor]) -> np.ndarray:
    """
    Zero-shot class scores `[n, C]`: the cosine similarity of each sample to each class's prompts, averaged over them,

        s_c(x) = 1 / |P_c| * sum_{p in P_c} x . t_p  =  x . mean_{p in P_c} t_p

    (the paper averages the similarities of COVID's sampled prompts; by linearity that is the similarity to the mean
    prompt embedding, which is what is computed). `class_prompt_embeds` holds each class's `[P_c, d]` prompts.
    """
    prototypes = torch.stack([prompts.mean(dim=0) for prompts in class_prompt_embeds])
    return (embeds @ prototypes.T).numpy()


def prototype_scores(
    query_embeds: torch.Tensor, support_embeds: torch.Tensor, support_targets: np.ndarray
) -> np.ndarray:
    """Cross-modality zero-shot scores `[n, C]` (paper Table 3): the cosine similarity of each query to each class
    prototype, the normalised mean of that class's support embeddings (from the other modality),

        s_c(q) = q . mu_c / ||mu_c||,   mu_c = mean_{i : y_i = c} z_i

    with `query_embeds` `[n, d]`, `support_embeds` `[m, d]` (L2-normalised) and `support_targets` `[m]` in `range(C)`.
    """
    num_classes = int(support_targets.max()) + 1
    prototypes = torch.stack(
        [support_embeds[torch.from_numpy(support_targets == c)].mean(dim=0) for c in range(num_classes)]
    )
    return (query_embeds @ F.normalize(prototypes, dim=-1).T).numpy()


def support_sets(targets: np.ndarray, num_classes: int, shots: int, num_sets: int, seed: int) -> np.ndarray:
    """Seeded few-shot support sets, nested across K: set s of K shots is the first K of set s's `shots` per class, so
    every K sees the same draws and the curves over K are not blurred by different samples. `shots` is the largest K
    (every class needs as many rows), the seed of set s is `(seed, s)`; returns `[num_sets, C, shots]` row indices
    into `targets`.
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
    """Few-shot linear probes (paper Figure 3), `{K: [S] balanced accuracies in percent}`: per support set and K, a
    multinomial logistic regression (scikit-learn, L2 penalty of inverse strength `regularization`) on the frozen
    embeddings of K samples per class, scored on every test sample, all probes in one batched product. `sets` is
    `[S, C, K_max]` indices into `support_embeds` (`support_sets`); class c's rows have target c.
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
    """2-D t-SNE coordinates `points` `[n, 2]` of CXR and ECG embeddings (paper Figure 2, left) and what the map shows.

    `classes` holds each point's single class (`single_class_rows`) or `"other"`; `agreement` is `{"modality": (share,
    chance), "class": (share, chance)}`: among each point's `TSNE_NEIGHBOURS` nearest neighbours on the map, the share
    with the same modality / class (percent), and what a map with no structure would give.
    """

    points: np.ndarray
    modalities: list[str]
    classes: list[str]
    agreement: dict[str, tuple[float, float]] = field(default_factory=dict)


def neighbour_agreement(
    points: np.ndarray, groups: Sequence[str], neighbours: int = TSNE_NEIGHBOURS
) -> tuple[float, float]:
    """The share of each point's nearest neighbours in its own group, in percent, and its chance level
    `sum_g n_g (n_g - 1) / (n (n - 1))` (the probability that another point drawn at random shares the group).
    """
    groups = np.asarray(groups)
    index = NearestNeighbors(n_neighbors=neighbours + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]
    share = 100.0 * float((groups[index] == groups[:, None]).mean())
    counts = np.unique(groups, return_counts=True)[1]
    chance = 100.0 * float((counts * (counts - 1)).sum() / (len(groups) * (len(groups) - 1)))
    return share, chance


def tsne_map(embeds: Mapping[str, torch.Tensor], classes: Mapping[str, Sequence[str]], seed: int = 0) -> TsneMap:
    """t-SNE of the CXR and ECG embeddings together (scikit-learn, PCA initialisation, perplexity 30 or less).

    An encoder-zoo pair embeds each modality into its own, unrelated space, possibly of another size: the smaller
    embeddings are zero-padded to the larger size, which keeps every distance within a modality.
    """
    size = max(embeds[m].shape[1] for m in embeds)
    stacked = torch.cat([F.pad(embeds[m], (0, size - embeds[m].shape[1])) for m in embeds]).numpy()
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


def _retrieval_keys(prefix: str, queries, candidates, groups, device, protocol: RetrievalProtocol) -> dict[str, float]:
    recalls, chances = protocol_recall_at_k(queries, candidates, groups, protocol, device=device)
    return {**recall_keys(prefix, recalls), **recall_keys(prefix, chances, name="chance")}


def modality_text_retrieval(
    embedder: TaskEmbedder,
    name: str,
    dataset: datasets.Dataset,
    modality: str,
    embeds: torch.Tensor,
    protocol: RetrievalProtocol = RetrievalProtocol(),
) -> dict[str, float]:
    """`retrieval/{name}/{modality}_to_text/{recall,chance}@K`: each sample's report among the split's reports
    (by default identical reports are all hits, the gallery the whole split: `protocol`); no keys for a dataset
    without a `text` column. The embedder's `max_words` decides which reports are identical.
    """
    if "text" not in dataset.column_names:
        return {}
    texts = dataset["text"]
    groups = torch.tensor(text_group_ids(texts, max_words=embedder.max_words))
    candidates = embedder.embed_texts(texts, name)
    prefix = retrieval_prefix(name, f"{modality}_to_text")
    return _retrieval_keys(prefix, embeds, candidates, groups, embedder.device, protocol)


def pair_retrieval(
    cxr_embeds: torch.Tensor,
    ecg_embeds: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    device=None,
    protocol: RetrievalProtocol = RetrievalProtocol(),
) -> dict[str, float]:
    """`retrieval/pairs/{cxr_to_ecg,ecg_to_cxr}/{recall,chance}@K` over a split's disjoint visit pairs: the query is a
    paired CXR (ECG), the gallery every paired ECG (CXR) or `protocol`'s fixed-size galleries of them, the hit its
    own visit's partner (both positive rules agree here).
    """
    cxr_rows, ecg_rows, groups = pair_groups(pairs)
    cxr, ecg = cxr_embeds[cxr_rows], ecg_embeds[ecg_rows]
    return {
        **_retrieval_keys(retrieval_prefix(PAIRS, "cxr_to_ecg"), cxr, ecg, groups, device, protocol),
        **_retrieval_keys(retrieval_prefix(PAIRS, "ecg_to_cxr"), ecg, cxr, groups, device, protocol),
    }


def validation_retrieval(
    model: MedBindModel, processor: MedBindProcessor, split: RetrievalSplit, batch_size: int = 64, device=None
) -> dict[str, float]:
    """The Trainer's validation metrics on one split of a DATA folder: `cxr` and `ecg` to their reports, CXR <-> ECG
    over its visit pairs, RSUM, and `recall_sum`, the checkpoint-selection metric. Nothing is cached: the weights
    change between calls.
    """
    embedder = Embedder(model, processor, batch_size=batch_size, device=device)
    results: dict[str, float] = {}
    embeds = {}
    for modality in MODALITIES:
        dataset = getattr(split, modality)
        if dataset is not None and len(dataset) > 0 and modality in embedder.modalities:
            embeds[modality] = embedder.embed(dataset, modality, modality)
            results |= modality_text_retrieval(embedder, modality, dataset, modality, embeds[modality])
    if split.pairs and len(embeds) == 2:
        results |= pair_retrieval(embeds["cxr"], embeds["ecg"], split.pairs, embedder.device)
    results |= rsum(results)
    return results | {"recall_sum": recall_sum(results)}


# ---- tasks on datasets -----------------------------------------------------------------------------------------


def zero_shot_results(
    embedder: TaskEmbedder, name: str, dataset: datasets.Dataset, embeds: torch.Tensor, prompt_set: PromptSet, seed: int = 0
) -> dict[str, float]:
    """`zero_shot/{name}/{balanced_accuracy,auroc}` (+ `/chance`): `zero_shot_scores` of the single-class rows of the
    prompt file's classes (`single_class_rows`), with each class's prompts drawn by `PromptSet.sample(seed)`. A
    prompt class the dataset does not have is an error (a typo would silently drop it).
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
    embedder: TaskEmbedder,
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
    """`few_shot/{name}/k{K}/{balanced_accuracy,ci95,chance}`: the mean balanced accuracy of `num_sets` probes per K on
    the evaluated split's single-class rows, the half-width of its 95% confidence interval (`mean_ci95`: how precisely
    the mean is known, not the spread between support sets), and chance. The K shots come from `support`'s (train)
    single-class rows; only the rows used are embedded. A class without support rows is left out (with its test rows),
    and so is a K larger than the smallest class's support pool (both with a warning).
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


def cross_modal_results(
    embedders: Mapping[str, TaskEmbedder],
    evaluated: RetrievalSplit,
    support: RetrievalSplit,
    tasks: Sequence[str] = ("retrieval", "cross_modality"),
    support_size: int | None = 1000,
    seed: int = 0,
    protocol: RetrievalProtocol = RetrievalProtocol(),
) -> dict[str, float]:
    """The tasks that need both modalities, on the evaluated split's visit pairs (none without pairs or both
    modalities): CXR <-> ECG `"retrieval"` (`pair_retrieval`), and `"cross_modality"`: `cross_modality/{task}/
    {balanced_accuracy,auroc}` (+ `/chance`) for each of `CROSS_MODALITY_TASKS` (paper Table 3). Each query is labelled
    by its visit partner (an ECG's HYP, a CXR's Cardiomegaly); the prototypes come from up to `support_size` samples
    per class (positive, negative) of the support split's other modality, so no test label is used.
    """
    if not evaluated.pairs or set(embedders) != set(MODALITIES):
        return {}
    results: dict[str, float] = {}
    if "retrieval" in tasks:
        cxr = embedders["cxr"].embed(evaluated.cxr, "cxr", "cxr")
        ecg = embedders["ecg"].embed(evaluated.ecg, "ecg", "ecg")
        results |= pair_retrieval(cxr, ecg, evaluated.pairs, embedders["cxr"].device, protocol=protocol)
    if "cross_modality" not in tasks:
        return results
    for task_name, task in CROSS_MODALITY_TASKS.items():
        query_data, partner_data = getattr(evaluated, task.query), getattr(evaluated, task.support)
        support_data = getattr(support, task.support)
        if support_data is None:
            continue
        query_side = MODALITIES.index(task.query)
        query_rows = [pair[query_side] for pair in evaluated.pairs]
        partner_labels = row_labels(partner_data)
        targets = np.array([task.label in partner_labels[pair[1 - query_side]] for pair in evaluated.pairs], dtype=int)
        support_targets = np.array([task.label in labels for labels in row_labels(support_data)], dtype=int)
        if len(np.unique(support_targets)) < 2 or len(np.unique(targets)) < 2:
            logger.warning("cross-modality %s: needs positive and negative %s samples; skipped", task_name, task.label)
            continue
        rng = np.random.default_rng(seed)  # up to support_size rows per class, drawn without replacement
        pools = [np.flatnonzero(support_targets == c) for c in np.unique(support_targets)]
        chosen = np.sort(np.concatenate([rng.permutation(pool)[:support_size] for pool in pools]))
        support_embeds = embedders[task.support].embed_rows(
            support_data, chosen, task.support, f"{task.support} support"
        )
        query_embeds = embedders[task.query].embed(query_data, task.query, task.query)[query_rows]
        scores = prototype_scores(query_embeds, support_embeds, support_targets[chosen])
        results |= classification_keys(f"cross_modality/{task_name}", scores, targets)
    return results
