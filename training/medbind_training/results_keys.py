"""The keys of results.json: built here and parsed here, so evaluation, figures and model cards agree on them.

Every number is flat and in percent: `retrieval/{dataset}/{direction}/{recall,chance}@K`, `retrieval/rsum_{modality}`,
`zero_shot/{dataset}/{metric}`, `few_shot/{dataset}/k{K}/{metric}`, `cross_modality/{task}/{metric}` (paper Tables 2-3,
Figure 3), `prompt_tuning/{task}/{mode}/{metric}` (Table 4), each classification metric with a `/chance` sibling.
Other models' keys are the same behind a prefix (`model_key`): `baselines/{NAME}/...` for each `--baseline NAME=PATH`,
`zoo/...` for the encoder zoo. A baseline's prompt-tuning keys have no mode: its name says whose embeddings its
tokens carry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import numpy as np

from .metrics import CHANCE_AUROC, balanced_accuracy, chance_balanced_accuracy, macro_auroc

logger = logging.getLogger(__name__)

RSUM_KS = (1, 10)  # the paper's RSUM adds R@1 and R@10 (Table 2)
RETRIEVAL_KEY = re.compile(
    r"^retrieval/(?P<dataset>[^/]+)/(?P<direction>\w+_to_\w+)/(?P<name>recall|chance)@(?P<k>\d+)$"
)
FEW_SHOT_KEY = re.compile(r"^few_shot/(?P<dataset>[^/]+)/k(?P<k>\d+)/(?P<name>balanced_accuracy|ci95|chance)$")
# `zero_shot/{dataset}/...` and `cross_modality/{task}/...`, written by `classification_keys`.
CLASSIFICATION_KEY = re.compile(
    r"^(?P<family>zero_shot|cross_modality)/(?P<dataset>[^/]+)/(?P<name>balanced_accuracy|auroc)$"
)
RSUM_KEY = re.compile(r"^retrieval/rsum_(?P<modality>\w+)$")
PROMPT_TUNING_KEY = re.compile(
    r"^prompt_tuning/(?P<task>[^/]+)/(?:(?P<mode>[^/]+)/)?"
    r"(?P<name>accuracy|balanced_accuracy|auroc)(?P<chance>/chance)?$"
)
BASELINE_PREFIX = "baselines/"
ZOO_PREFIX = "zoo/"
MAIN_MODEL = "MedBind"  # how `split_models` names the evaluated model's keys (no prefix)
ZOO_MODEL = "encoder zoo"  # how `split_models` names the `zoo/` keys


def model_key(prefix: str, key: str) -> str:
    """Another model's key: `prefix` (`baselines/{NAME}/` or `zoo/`) + the evaluated model's key."""
    return f"{prefix}{key}"


def model_name(prefix: str, main: str = MAIN_MODEL) -> str:
    """How tables and figures name the model of a key prefix: NAME for `baselines/NAME/`, `ZOO_MODEL` for `zoo/`,
    `main` for none (the evaluated model)."""
    if prefix.startswith(BASELINE_PREFIX):
        return prefix.removeprefix(BASELINE_PREFIX).partition("/")[0]
    return ZOO_MODEL if prefix.startswith(ZOO_PREFIX) else main


def split_models(metrics: Mapping[str, float], main: str = MAIN_MODEL) -> dict[str, dict[str, float]]:
    """`{model: its metrics without the prefix}`: the unprefixed keys under `main`, `baselines/{NAME}/...` under NAME,
    `zoo/...` under `ZOO_MODEL` (`model_name`); the evaluated model first, then in the order met.
    """
    models: dict[str, dict[str, float]] = {main: {}}
    for key, value in metrics.items():
        name = model_name(key, main)
        if key.startswith(BASELINE_PREFIX):
            key = key.removeprefix(f"{BASELINE_PREFIX}{name}/")
        elif key.startswith(ZOO_PREFIX):
            key = key.removeprefix(ZOO_PREFIX)
        models.setdefault(name, {})[key] = value
    return {name: found for name, found in models.items() if found}


def retrieval_prefix(dataset: str, direction: str) -> str:
    """`retrieval/{dataset}/{direction}`: the prefix of `.../recall@K` and `.../chance@K`."""
    return f"retrieval/{dataset}/{direction}"


def prompt_tuning_prefix(task: str, mode: str | None = None) -> str:
    """`prompt_tuning/{task}/{mode}`, or `prompt_tuning/{task}` for a baseline (put behind its `model_key` prefix)."""
    return f"prompt_tuning/{task}" if mode is None else f"prompt_tuning/{task}/{mode}"


def prompt_tuning_rows(results: Mapping[str, float], mode: str) -> dict[str, dict[str, float]]:
    """The rows of the paper's Table 4 that a prompt-tuning `results.json` holds: `{model: {metric: value,
    metric/chance: value}}`, the run's own mode first (named `mode`), then each baseline by its name.
    """
    rows: dict[str, dict[str, float]] = {}
    for model, metrics in split_models(results, main=mode).items():
        for key, value in metrics.items():
            if match := PROMPT_TUNING_KEY.match(key):
                rows.setdefault(model, {})[match["name"] + (match["chance"] or "")] = value
    return rows


def classification_keys(prefix: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """`{prefix}/balanced_accuracy` (prediction = the class of highest score, the first on a tie) and `{prefix}/auroc`
    (two classes: of the score difference, class 1 minus class 0; more: macro one-vs-rest; left out with a warning
    when the split holds one class only), each with a `/chance` sibling. `prefix` is e.g. `zero_shot/ptbxl`.
    """
    results = {
        f"{prefix}/balanced_accuracy": float(balanced_accuracy(scores.argmax(axis=1), targets)),
        f"{prefix}/balanced_accuracy/chance": chance_balanced_accuracy(targets),
    }
    if len(np.unique(targets)) > 1:
        auroc_scores = scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores
        results[f"{prefix}/auroc"] = macro_auroc(auroc_scores, targets)
        results[f"{prefix}/auroc/chance"] = CHANCE_AUROC
    else:
        logger.warning("%s: one class only among %d samples, no AUROC", prefix, len(targets))
    return results


def rsum(results: Mapping[str, float]) -> dict[str, float]:
    """The paper's RSUM (Table 2): per modality m, the sum over datasets of R@1 + R@10 of m -> text retrieval, as
    `retrieval/rsum_cxr`, `retrieval/rsum_ecg` (only for modalities with a result).
    """
    sums: dict[str, float] = {}
    for key, value in results.items():
        match = RETRIEVAL_KEY.match(key)
        to_text = match is not None and match["direction"].endswith("_to_text")
        if to_text and match["name"] == "recall" and int(match["k"]) in RSUM_KS:
            modality = match["direction"].removesuffix("_to_text")
            sums[f"retrieval/rsum_{modality}"] = sums.get(f"retrieval/rsum_{modality}", 0.0) + value
    return sums


def recall_sum(results: Mapping[str, float]) -> float:
    """The sum of every recall@K of every direction and dataset: a selection metric (not the paper's RSUM)."""
    return sum(value for key, value in results.items() if (m := RETRIEVAL_KEY.match(key)) and m["name"] == "recall")
