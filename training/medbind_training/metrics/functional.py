"""The arithmetic of MedBind's classification metrics, as plain array functions (percent): the `evaluate` modules
beside this file wrap them, and evaluation code that scores hundreds of probes at once calls them directly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score


def _check_classifications(predictions: np.ndarray, references: np.ndarray, metric: str) -> None:
    if predictions.shape[-1:] != references.shape or references.size == 0:
        raise ValueError(
            f"{metric} needs [..., n] predictions and [n] references with n > 0, got "
            f"{predictions.shape} and {references.shape}"
        )


def accuracy(predictions: ArrayLike, references: ArrayLike) -> np.ndarray:
    """Accuracy, the share of correct predictions in percent: 100 / n * |{i : yhat_i = y_i}|.

    The paper's metric for the prompt-tuning outcomes (Table 4). It rewards the majority class: its chance level is
    `chance_accuracy` (always predicting the most frequent class), not 100 / |C|. Leading dimensions of the `[..., n]`
    predictions score several classifiers at once: `[...]` accuracies (a 0-d array for one classifier).
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    _check_classifications(predictions, references, "accuracy")
    return 100.0 * (predictions == references).mean(axis=-1)


def chance_accuracy(references: ArrayLike) -> float:
    """The accuracy of a classifier that ignores its input and predicts the majority class: its share in percent."""
    _, counts = np.unique(np.asarray(references), return_counts=True)
    return 100.0 * counts.max() / counts.sum()


def balanced_accuracy(predictions: ArrayLike, references: ArrayLike) -> np.ndarray:
    """Balanced accuracy: the mean over classes of the recall of that class, in percent,

        BA = 100 / |C| * sum_{c in C} |{i : y_i = c, yhat_i = c}| / |{i : y_i = c}|

    where C is the set of classes present in `references` (a class that never occurs has no recall; a prediction of
    such a class counts as a miss). Equals scikit-learn's `balanced_accuracy_score` x 100. Any classifier that
    ignores its input (constant, or random) scores 100 / |C| in expectation. Leading dimensions of the `[..., n]`
    predictions score several classifiers at once against the same references (e.g. `[num_support_sets, n]`).
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    _check_classifications(predictions, references, "balanced_accuracy")
    recalls = [(predictions[..., references == label] == label).mean(axis=-1) for label in np.unique(references)]
    return 100.0 * np.mean(recalls, axis=0)


def chance_balanced_accuracy(references: ArrayLike) -> float:
    """The balanced accuracy of a classifier that ignores its input: 100 / (classes present in `references`)."""
    return 100.0 / len(np.unique(np.asarray(references)))


def macro_auroc(scores: ArrayLike, references: ArrayLike) -> float:
    """Area under the ROC curve in percent: binary, or the macro mean of one-vs-rest AUROCs for several classes.

    One-vs-rest AUROC of class c is the probability that a random sample of class c scores higher on column c than
    a random sample of another class, a tie counting one half (the Mann-Whitney statistic; scikit-learn's
    `roc_auc_score`). The scores need not be probabilities (cosine similarities are fine: only their order within
    a column matters). Classes absent from `references` have no AUROC and are left out of the mean. `scores` are
    `[n]` scores of the positive class (binary references 0 / 1), or `[n, C]`, one column per class.
    """
    scores, references = np.asarray(scores, dtype=np.float64), np.asarray(references)
    present = np.unique(references)
    if len(present) < 2:
        raise ValueError(f"AUROC needs at least two classes among the references, got {present.tolist()}")
    if scores.ndim == 1:
        return 100.0 * roc_auc_score(references, scores)
    if scores.ndim != 2 or scores.shape[0] != len(references) or present.max() >= scores.shape[1]:
        raise ValueError(f"[n, C] scores must have a column per class of the references, got {scores.shape}")
    return 100.0 * float(np.mean([roc_auc_score(references == label, scores[:, label]) for label in present]))


CHANCE_AUROC = 50.0  # any score that ignores the input ranks positives above negatives half the time
