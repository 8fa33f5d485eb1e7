"""The figures of training/medbind_training/figures.py: written from results.json keys, each with its chance level."""

import numpy as np
import pytest
from PIL import Image

from medbind_training.evaluation_tasks import TsneMap
from medbind_training.figures import plot_few_shot, plot_recalls, plot_tsne
from medbind_training.retrieval import recall_keys


def is_png(path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.width > 300


def test_recall_figure_reads_results_and_validation_keys(tmp_path):
    metrics = {
        **recall_keys("retrieval/cxr/cxr_to_text", {1: 40.0, 5: 70.0, 10: 90.0}),
        **recall_keys("retrieval/cxr/cxr_to_text", {1: 1.0, 5: 5.0, 10: 10.0}, name="chance"),
        **recall_keys("eval_retrieval/pairs/cxr_to_ecg", {1: 12.0, 5: 30.0, 10: 45.0}),
        "retrieval/rsum_cxr": 130.0,
    }
    assert is_png(plot_recalls(metrics, tmp_path / "retrieval.png"))
    with pytest.raises(ValueError, match="no"):
        plot_recalls({"retrieval/rsum_cxr": 1.0}, tmp_path / "empty.png")


def test_few_shot_figure_has_a_panel_per_dataset(tmp_path):
    metrics = {"zero_shot/ptbxl/balanced_accuracy": 41.0}
    for dataset in ("ptbxl", "covid"):
        for k, value in ((1, 30.0), (4, 45.0), (16, 60.0)):
            metrics |= {f"few_shot/{dataset}/k{k}/balanced_accuracy": value, f"few_shot/{dataset}/k{k}/ci95": 2.0,
                        f"few_shot/{dataset}/k{k}/chance": 20.0}  # fmt: skip
    assert is_png(plot_few_shot(metrics, tmp_path / "few_shot.png"))
    with pytest.raises(ValueError, match="no"):
        plot_few_shot({"zero_shot/ptbxl/balanced_accuracy": 41.0}, tmp_path / "empty.png")


def test_tsne_figure_shows_modalities_and_classes(tmp_path):
    rng = np.random.default_rng(0)
    tsne = TsneMap(points=rng.normal(size=(40, 2)), modalities=["cxr"] * 20 + ["ecg"] * 20,
                   classes=["CXR Cardiomegaly"] * 10 + ["other"] * 10 + ["ECG HYP"] * 20,
                   agreement={"modality": (80.0, 48.7), "class": (60.0, 30.0)})  # fmt: skip
    assert is_png(plot_tsne({"MedBind": tsne}, tmp_path / "tsne.png"))
    with pytest.raises(ValueError, match="no t-SNE map"):
        plot_tsne({}, tmp_path / "none.png")


def test_tsne_figure_draws_a_row_per_model(tmp_path):
    rng = np.random.default_rng(0)

    def random_map() -> TsneMap:
        return TsneMap(rng.normal(size=(10, 2)), ["cxr"] * 5 + ["ecg"] * 5, ["other"] * 10, {"modality": (90.0, 44.4)})

    with Image.open(plot_tsne({"MedBind": random_map()}, tmp_path / "one.png")) as one:
        one_height = one.height
    three = {"MedBind": random_map(), "NM": random_map(), "encoder zoo": random_map()}
    with Image.open(plot_tsne(three, tmp_path / "three.png")) as image:
        assert image.height > 2.5 * one_height


def test_retrieval_and_few_shot_figures_draw_every_model(tmp_path):
    metrics = {
        **recall_keys("retrieval/cxr/cxr_to_text", {1: 40.0, 5: 70.0, 10: 90.0}),
        **recall_keys("retrieval/cxr/cxr_to_text", {1: 1.0, 5: 5.0, 10: 10.0}, name="chance"),
        "few_shot/cxr/k1/balanced_accuracy": 40.0, "few_shot/cxr/k1/ci95": 2.0, "few_shot/cxr/k1/chance": 33.3,
        "few_shot/cxr/k2/balanced_accuracy": 50.0, "few_shot/cxr/k2/ci95": 2.0, "few_shot/cxr/k2/chance": 33.3,
        "zero_shot/cxr/balanced_accuracy": 45.0,
    }  # fmt: skip
    others = {f"{prefix}{key}": value * 0.5 for prefix in ("baselines/clip/", "zoo/")
              for key, value in metrics.items() if "chance" not in key}  # fmt: skip
    for plot, name in ((plot_recalls, "retrieval"), (plot_few_shot, "few_shot")):
        alone = np.asarray(Image.open(plot(metrics, tmp_path / f"{name}-alone.png")))
        every = np.asarray(Image.open(plot(metrics | others, tmp_path / f"{name}-every.png")))
        assert alone.shape != every.shape or (alone != every).any()  # the other models are drawn


def test_results_split_by_model_prefix():
    from medbind_training.results_keys import split_models

    models = split_models({"zero_shot/x/auroc": 1.0, "baselines/clip/zero_shot/x/auroc": 2.0, "zoo/zero_shot/x/auroc": 3.0})
    assert models == {"MedBind": {"zero_shot/x/auroc": 1.0}, "clip": {"zero_shot/x/auroc": 2.0},
                      "encoder zoo": {"zero_shot/x/auroc": 3.0}}  # fmt: skip
