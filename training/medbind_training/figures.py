"""Figures written next to the `results.json` they show (paper Figures 2-3 and the retrieval of Table 2), each with
the chance level beside the measured value, so a reader can tell a real score from noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

from .evaluation_tasks import TSNE_NEIGHBOURS, TsneMap  # noqa: E402
from .results_keys import FEW_SHOT_KEY, RETRIEVAL_KEY, split_models  # noqa: E402
from .retrieval import RECALL_KS  # noqa: E402

CHANCE_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.2}


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _model_colors(models: Sequence[str]) -> dict[str, object]:
    palette = plt.get_cmap("tab10")
    return {model: palette(index % palette.N) for index, model in enumerate(models)}


def plot_recalls(metrics: Mapping[str, float], path: str | Path, title: str = "Retrieval recall@K") -> Path:
    """Recall@1/5/10 (one panel per K, stacked) per dataset and retrieval direction, a bar per model (`split_models`)
    and each group's chance level as a black tick, from results.json's retrieval keys (an `eval_` prefix is accepted).
    """
    tables: dict[str, dict[str, dict[str, dict[int, float]]]] = {}
    for model, found in split_models({key.removeprefix("eval_"): value for key, value in metrics.items()}).items():
        for key, value in found.items():
            if match := RETRIEVAL_KEY.match(key):
                row = tables.setdefault(model, {}).setdefault(
                    f"{match['dataset']}\n{match['direction'].replace('_to_', ' -> ')}", {}
                )
                row.setdefault(match["name"], {})[int(match["k"])] = value
    tables = {model: rows for model, rows in tables.items() if any("recall" in row for row in rows.values())}
    if not tables:
        raise ValueError("plot_recalls found no 'retrieval/{dataset}/{direction}/recall@{k}' metric to plot")
    groups = list(dict.fromkeys(group for rows in tables.values() for group in rows))
    colors, width = _model_colors(list(tables)), 0.8 / len(tables)
    # Each group's chance levels, from the first model that has them: they depend on the data only.
    chances = [next((rows[g]["chance"] for rows in tables.values() if "chance" in rows.get(g, {})), {}) for g in groups]
    # One row per K, so that many models and datasets still fit a page's width.
    figure, panels = plt.subplots(
        len(RECALL_KS), 1, figsize=(2.5 + len(groups) * (0.4 + 0.25 * len(tables)), 2.6 * len(RECALL_KS)),
        sharex=True, squeeze=False,
    )  # fmt: skip
    for axes, k in zip(panels[:, 0], RECALL_KS):
        for offset, (model, rows) in enumerate(tables.items()):
            positions = [i + (offset - (len(tables) - 1) / 2) * width for i in range(len(groups))]
            values = [rows.get(group, {}).get("recall", {}).get(k, float("nan")) for group in groups]
            bars = axes.bar(positions, values, width, color=colors[model], label=model)
            axes.bar_label(bars, fmt="%.0f", fontsize=6)
        chance = [(i, levels[k]) for i, levels in enumerate(chances) if k in levels]
        if chance:  # a tick across the group's bars
            positions, values = zip(*chance)
            axes.hlines(values, [i - 0.42 for i in positions], [i + 0.42 for i in positions], color="black",
                        linewidth=2, zorder=3, label="chance")  # fmt: skip
        axes.set_xticks(range(len(groups)), groups, fontsize=8)
        axes.set_ylim(0, 108)
        axes.set_ylabel(f"R@{k} (%)")
    panels[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def plot_few_shot(metrics: Mapping[str, float], path: str | Path, title: str = "Few-shot linear probe") -> Path:
    """Balanced accuracy vs K shots per class, one panel per dataset (paper Figure 3): per model (`split_models`), in
    its own colour, the mean over support sets with its 95% confidence interval and its zero-shot balanced accuracy as
    a dashed line; chance as a dotted line.
    """
    models = split_models(metrics)
    curves: dict[str, dict[str, dict[int, dict[str, float]]]] = {}  # dataset -> model -> K -> name -> value
    for model, found in models.items():
        for key, value in found.items():
            if match := FEW_SHOT_KEY.match(key):
                points = curves.setdefault(match["dataset"], {}).setdefault(model, {})
                points.setdefault(int(match["k"]), {})[match["name"]] = value
    if not curves:
        raise ValueError("plot_few_shot found no 'few_shot/{dataset}/k{K}/balanced_accuracy' metric to plot")
    colors = _model_colors(list(models))
    columns = min(4, len(curves))
    rows = -(-len(curves) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    for axes, (dataset, per_model) in zip(grid.flat, sorted(curves.items())):
        for model, points in per_model.items():
            ks = sorted(points)
            axes.errorbar(ks, [points[k]["balanced_accuracy"] for k in ks], yerr=[points[k].get("ci95", 0.0) for k in ks],
                          marker="o", markersize=3, capsize=3, color=colors[model], label=f"{model} few-shot")  # fmt: skip
            if (zero_shot := models[model].get(f"zero_shot/{dataset}/balanced_accuracy")) is not None:
                axes.axhline(zero_shot, color=colors[model], linestyle="--", label=f"{model} zero-shot")
        first = next(iter(per_model.values()))
        all_ks = sorted({k for points in per_model.values() for k in points})
        axes.axhline(first[min(first)]["chance"], **CHANCE_STYLE, label="chance")
        axes.set_xscale("log", base=2)
        axes.set_xticks(all_ks, [str(k) for k in all_ks])
        axes.set_ylim(0, 100)
        axes.set_title(dataset, fontsize=10)
        axes.set_xlabel("K shots per class")
        axes.set_ylabel("balanced accuracy (%)")
    for axes in list(grid.flat)[len(curves) :]:
        axes.axis("off")
    # One legend for every panel, beside the last: the models are the same in each.
    legend = {label: handle for axes in grid.flat for handle, label in zip(*axes.get_legend_handles_labels())}
    list(grid.flat)[len(curves) - 1].legend(
        legend.values(), legend.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0)
    )
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def plot_tsne(maps: Mapping[str, TsneMap], path: str | Path, title: str = "t-SNE of CXR and ECG embeddings") -> Path:
    """Each model's t-SNE map twice (paper Figure 2, left), a row per model: coloured by modality, and by class (marker
    by modality). Each panel's title gives the share of nearest map neighbours of the same modality / class and its
    chance level, behind the model's name when there are several.
    """
    if not maps:
        raise ValueError("no t-SNE map to draw")
    figure, rows = plt.subplots(len(maps), 2, figsize=(12, 5.2 * len(maps)), squeeze=False)
    for (model, tsne), (by_modality, by_class) in zip(maps.items(), rows):
        _draw_tsne(tsne, by_modality, by_class, model if len(maps) > 1 else "")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def _draw_tsne(tsne: TsneMap, by_modality: plt.Axes, by_class: plt.Axes, model: str) -> None:
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
            f"{model + ': ' if model else ''}by {aspect}: {TSNE_NEIGHBOURS}-NN same {aspect} {share:.0f}% "
            f"(chance {chance:.0f}%)",
            fontsize=10,
        )
        axes.set_xticks([])
        axes.set_yticks([])
        axes.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
