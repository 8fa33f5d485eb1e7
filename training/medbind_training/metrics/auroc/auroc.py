"""Area under the ROC curve (binary, or macro one-vs-rest) in percent, as an `evaluate` module."""

import datasets
import evaluate

from medbind_training.metrics.functional import macro_auroc

_DESCRIPTION = """
Area under the ROC curve in percent. Config "binary": one score per sample, references 0 / 1. Config "multiclass":
one score per class per sample, the macro mean of the one-vs-rest AUROCs of the classes present in the references
(what ECG-text papers such as MERL report for zero-shot classification). Scores need not be probabilities: cosine
similarities work, since only their order within a class column matters. A tie between a positive and a negative
counts one half (the Mann-Whitney statistic), so a constant score gives exactly 50.
"""

_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list` of `float`, or of `list` of `float` for "multiclass"): higher means more likely.
    references (`list` of `int`): true classes.
Returns:
    auroc (`float`): in percent, 0 to 100 (50 = chance).
Examples:
    >>> metric = evaluate.load("auroc.py", "multiclass")
    >>> metric.compute(prediction_scores=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], references=[0, 1, 0])
    {'auroc': 100.0}
"""

_CITATION = """
@article{hanley1982meaning,
  title={The meaning and use of the area under a receiver operating characteristic (ROC) curve},
  author={Hanley, James A and McNeil, Barbara J},
  journal={Radiology},
  volume={143},
  number={1},
  pages={29--36},
  year={1982}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AUROC(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("binary", "multiclass", "default"):  # "default": no config given, i.e. binary
            raise ValueError(f"AUROC configs are 'binary' and 'multiclass', got {self.config_name!r}")
        score = datasets.Value("float64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "prediction_scores": datasets.Sequence(score) if self.config_name == "multiclass" else score,
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"],
        )

    def _compute(self, prediction_scores, references):
        return {"auroc": macro_auroc(prediction_scores, references)}
