"""Figures written next to the `results.json` they show (paper Figures 2-3 and the retrieval of Table 2).

Every figure draws the chance level beside the measured value, so a reader can tell a real score from noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

from .evaluation_tasks import TSNE_NEIGHBOURS, TsneMap  # noqa: E402
from .results_keys import FEW_SHOT_KEY, RETRIEVAL_KEY  # noqa: E402
from .retrieval import RECALL_KS  # noqa: E402

CHANCE_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.2}


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_recalls(metrics: Mapping[str, float], path: str | Path, title: str = "Retrieval recall@K") -> Path:
    """
    Grouped bars of recall@1/5/10 per dataset and retrieval direction, with each bar's chance level as a black tick.

    Args:
        metrics: flat `retrieval/{dataset}/{direction}/{recall,chance}@{k}` keys (an `eval_` prefix is accepted),
            values in percent.
        path: where to write the PNG.
        title: the figure's title.

    Returns:
        The path written.

    Raises:
        ValueError: when `metrics` holds no recall.
    """
    table: dict[str, dict[str, dict[int, float]]] = {}
    for key, value in metrics.items():
        if match := RETRIEVAL_KEY.match(key.removeprefix("eval_")):
            row = table.setdefault(f"{match['dataset']}\n{match['direction'].replace('_to_', ' -> ')}", {})
            row.setdefault(match["name"], {})[int(match["k"])] = value
    table = {name: row for name, row in table.items() if "recall" in row}
    if not table:
        raise ValueError("plot_recalls found no 'retrieval/{dataset}/{direction}/recall@{k}' metric to plot")
    width = 0.8 / len(RECALL_KS)
    figure, axes = plt.subplots(figsize=(2.0 + 1.5 * len(table), 4.0))
    for offset, k in enumerate(RECALL_KS):
        positions = [i + (offset - (len(RECALL_KS) - 1) / 2) * width for i in range(len(table))]
        bars = axes.bar(positions, [row["recall"].get(k, 0.0) for row in table.values()], width, label=f"R@{k}")
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
        chance = [
            (x, row.get("chance", {})[k]) for x, row in zip(positions, table.values()) if k in row.get("chance", {})
        ]
        if chance:
            axes.scatter(
                *zip(*chance), marker="_", s=220, color="black", zorder=3, label="chance" if offset == 0 else None
            )
    axes.set_xticks(range(len(table)), list(table), fontsize=8)
    axes.set_ylabel("recall (%)")
    axes.set_ylim(0, 108)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left", fontsize=8, ncols=len(RECALL_KS) + 1)
    return _save(figure, path)


def plot_few_shot(metrics: Mapping[str, float], path: str | Path, title: str = "Few-shot linear probe") -> Path:
    """
    Balanced accuracy vs K shots per class, one panel per dataset (paper Figure 3): the mean over support sets with
    its 95% confidence interval, the zero-shot balanced accuracy as a dashed line, and chance as a dotted line.

    Args:
        metrics: flat `few_shot/{dataset}/k{K}/{balanced_accuracy,ci95,chance}` and
            `zero_shot/{dataset}/balanced_accuracy` keys, in percent.
        path: where to write the PNG.
        title: the figure's title.

    Returns:
        The path written.

    Raises:
        ValueError: when `metrics` holds no few-shot result.
    """
    curves: dict[str, dict[int, dict[str, float]]] = {}
    for key, value in metrics.items():
        if match := FEW_SHOT_KEY.match(key):
            curves.setdefault(match["dataset"], {}).setdefault(int(match["k"]), {})[match["name"]] = value
    if not curves:
        raise ValueError("plot_few_shot found no 'few_shot/{dataset}/k{K}/balanced_accuracy' metric to plot")
    columns = min(4, len(curves))
    rows = -(-len(curves) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.0 * rows), squeeze=False)
    for axes, (dataset, points) in zip(grid.flat, sorted(curves.items())):
        ks = sorted(points)
        axes.errorbar(ks, [points[k]["balanced_accuracy"] for k in ks], yerr=[points[k].get("ci95", 0.0) for k in ks],
                      marker="o", capsize=3, label="few-shot probe")  # fmt: skip
        if (zero_shot := metrics.get(f"zero_shot/{dataset}/balanced_accuracy")) is not None:
            axes.axhline(zero_shot, color="tab:orange", linestyle="--", label="zero-shot")
        axes.axhline(points[ks[0]]["chance"], **CHANCE_STYLE, label="chance")
        axes.set_xscale("log", base=2)
        axes.set_xticks(ks, [str(k) for k in ks])
        axes.set_ylim(0, 100)
        axes.set_title(dataset, fontsize=10)
        axes.set_xlabel("K shots per class")
        axes.set_ylabel("balanced accuracy (%)")
        axes.legend(fontsize=7, loc="lower right")
    for axes in list(grid.flat)[len(curves) :]:
        axes.axis("off")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def plot_tsne(tsne: TsneMap, path: str | Path, title: str = "t-SNE of CXR and ECG embeddings") -> Path:
    """
    The t-SNE map twice (paper Figure 2, left): coloured by modality, and by class (marker by modality). Each panel's
    title gives the share of nearest map neighbours of the same modality / class and its chance level.

    Args:
        tsne: the map (`medbind_training.evaluation_tasks.tsne_map`).
        path: where to write the PNG.
        title: the figure's title.

    Returns:
        The path written.
    """
    figure, (by_modality, by_class) = plt.subplots(1, 2, figsize=(12, 5.2))
    markers = {"cxr": "o", "ecg": "^"}
    for modality in sorted(set(tsne.modalities)):
        chosen = [i for i, m in enumerate(tsne.modalities) if m == modality]
        by_modality.scatter(
            *tsne.points[chosen].T, s=8, alpha=0.6, marker=markers.get(modality, "o"), label=modality.upper()
        )
    names = sorted(set(tsne.classes) - {"other"}) + ["other"]
    palette = plt.get_cmap("tab10" if len(names) <= 11 else "tab20")  # distinct hues first; tab20 pairs similar ones
    for index, name in enumerate(names):
        for modality in sorted(set(tsne.modalities)):
            chosen = [i for i, (m, c) in enumerate(zip(tsne.modalities, tsne.classes)) if m == modality and c == name]
            if chosen:
                color = "lightgray" if name == "other" else palette(index % palette.N)
                by_class.scatter(*tsne.points[chosen].T, s=8, alpha=0.7, color=color, marker=markers.get(modality, "o"),
                                 label=name if name != "other" else f"other ({modality.upper()})")  # fmt: skip
    for axes, aspect in ((by_modality, "modality"), (by_class, "class")):
        share, chance = tsne.agreement.get(aspect, (float("nan"), float("nan")))
        axes.set_title(
            f"by {aspect}: {TSNE_NEIGHBOURS}-NN same {aspect} {share:.0f}% (chance {chance:.0f}%)", fontsize=10
        )
        axes.set_xticks([])
        axes.set_yticks([])
        axes.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


__all__ = ["plot_few_shot", "plot_recalls", "plot_tsne"]
