"""MedBind's metrics (in percent) as `evaluate` modules that ship in the package, one folder each as on the Hub, and
load by local path (`load_metric`): nothing is fetched from the Hub, which an offline cluster cannot reach.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from typing import Any

import evaluate

from .functional import (
    CHANCE_AUROC, accuracy, balanced_accuracy, chance_accuracy, chance_balanced_accuracy, macro_auroc
)

METRIC_NAMES = ("accuracy", "auroc", "balanced_accuracy", "recall_at_k")


def load_metric(name: str, config_name: str | None = None, **kwargs: Any) -> evaluate.EvaluationModule:
    """One of MedBind's metric modules (`METRIC_NAMES`), loaded from the package with `evaluate.load` (which takes
    `kwargs`); `config_name` is `"multiclass"` for the AUROC of several classes (default `"binary"`).
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown MedBind metric {name!r}; choose one of {METRIC_NAMES}")
    # `as_file` gives a real path even from a zipped install; evaluate copies the script into its module cache.
    with as_file(files(__name__) / name / f"{name}.py") as script:
        return evaluate.load(str(script), config_name, **kwargs)


__all__ = [
    "CHANCE_AUROC",
    "METRIC_NAMES",
    "accuracy",
    "balanced_accuracy",
    "chance_accuracy",
    "chance_balanced_accuracy",
    "load_metric",
    "macro_auroc",
]
