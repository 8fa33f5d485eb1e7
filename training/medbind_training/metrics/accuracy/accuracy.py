"""Accuracy (share of correct predictions) in percent, as an `evaluate` module."""

import datasets
import evaluate

from medbind_training.metrics.functional import accuracy

_DESCRIPTION = """
Accuracy: the share of predictions equal to the reference, in percent. The MEDBind paper reports it for the
prompt-tuning outcomes (30-day readmission, in-hospital mortality). It rewards the majority class: a classifier
that always predicts the most frequent class scores that class's share, so read it next to its chance level and
the balanced accuracy. The Hub's `accuracy` metric computes the same fraction (0 to 1) but cannot be fetched offline.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted classes.
    references (`list` of `int`): true classes.
Returns:
    accuracy (`float`): in percent, 0 to 100.
Examples:
    >>> metric = evaluate.load("accuracy.py")
    >>> metric.compute(predictions=[0, 0, 0, 1], references=[0, 0, 1, 1])
    {'accuracy': 75.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy(predictions, references))}
