"""Figures written next to the JSON results they show."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

from .model_card import recall_values  # noqa: E402


def plot_recalls(metrics: Mapping[str, float], path: str | Path, title: str = "Retrieval recall@K") -> Path:
    """
    Grouped bars of recall@1/5/10 per retrieval direction, saved as a PNG.

    Args:
        metrics: flat `{direction}/recall@{k}` keys (an `eval_` prefix is accepted), values in percent.
        path: where to write the PNG.

    Returns:
        The path written.

    Raises:
        ValueError: when `metrics` holds no recall.
    """
    table = recall_values(metrics)
    if not table:
        raise ValueError("plot_recalls found no '{direction}/recall@{k}' metric to plot")
    ks = (1, 5, 10)
    width = 0.8 / len(ks)
    figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(table), 3.6))
    for offset, k in enumerate(ks):
        values = [row.get(k, 0.0) for row in table.values()]
        positions = [i + (offset - 1) * width for i in range(len(table))]
        bars = axes.bar(positions, values, width, label=f"R@{k}")
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
    axes.set_xticks(range(len(table)), list(table))
    axes.set_ylabel("recall (%)")
    axes.set_ylim(0, 105)
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


__all__ = ["plot_recalls"]
