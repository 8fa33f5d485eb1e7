"""Balanced accuracy (mean per-class recall) in percent, as an `evaluate` module."""

import datasets
import evaluate

from medbind_training.metrics.functional import balanced_accuracy

_DESCRIPTION = """
Balanced accuracy: the mean over the classes present in the references of the recall of that class, in percent
(scikit-learn's `balanced_accuracy_score` x 100). Unlike accuracy it does not reward predicting the majority class:
any classifier that ignores its input scores 100 / (number of classes) in expectation. MEDBind reports it for
zero-shot, few-shot and cross-modality classification.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted classes.
    references (`list` of `int`): true classes.
Returns:
    balanced_accuracy (`float`): in percent, 0 to 100.
Examples:
    >>> metric = evaluate.load("balanced_accuracy.py")
    >>> metric.compute(predictions=[0, 0, 0, 1], references=[0, 0, 1, 1])
    {'balanced_accuracy': 75.0}
"""

_CITATION = """
@inproceedings{brodersen2010balanced,
  title={The balanced accuracy and its posterior distribution},
  author={Brodersen, Kay Henning and Ong, Cheng Soon and Stephan, Klaas Enno and Buhmann, Joachim M},
  booktitle={20th International Conference on Pattern Recognition},
  pages={3121--3124},
  year={2010}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BalancedAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.balanced_accuracy_score.html"
            ],
        )

    def _compute(self, predictions, references):
        return {"balanced_accuracy": float(balanced_accuracy(predictions, references))}
