"""MedBind's metrics as `evaluate` modules that ship in the package and load by local path.

The modules (`accuracy`, `balanced_accuracy`, `auroc`, `recall_at_k`, all in percent) live in folders beside this
file, one script per folder, as on the Hub; `load_metric(name)` finds them with `importlib.resources`, so callers
never build paths and nothing is fetched from the Hub (which an offline cluster cannot reach):

    >>> from medbind_training.metrics import load_metric
    >>> load_metric("balanced_accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'balanced_accuracy': 75.0}
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
