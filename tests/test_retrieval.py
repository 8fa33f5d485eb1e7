"""Recall@K, its relevance helpers, the recall figure and the model card that reports it."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modeling_medbind import MedBindConfig
from medbind.training.figures import plot_recalls
from medbind.training.model_card import recall_table, render_model_card
from medbind.training.retrieval import chance_recall_at_k, flat_recalls, pair_relevance, recall_at_k, same_group


def one_hot(indices, dim=6):
    return F.one_hot(torch.tensor(indices), dim).float()


def test_recall_counts_a_hit_within_the_top_k():
    candidates = F.normalize(torch.eye(4) + 0.1, dim=-1)
    # query 0 is candidate 0 itself; query 1 points between candidates 2 (closest) and 1 (second)
    queries = F.normalize(torch.tensor([[1.0, 0, 0, 0], [0, 0.6, 0.8, 0]]), dim=-1)
    relevant = torch.tensor([[True, False, False, False], [False, True, False, False]])
    recalls = recall_at_k(queries, candidates, relevant, ks=(1, 2, 10))
    assert recalls == {1: 50.0, 2: 100.0, 10: 100.0}


def test_identical_reports_count_as_hits():
    # rows 1 and 2 carry the same report; row 1 is ranked first for query 2, whose own row is 2
    texts = torch.stack([one_hot([0])[0], one_hot([1])[0], F.normalize(one_hot([1])[0] + 0.1 * one_hot([4])[0], dim=0),
                         one_hot([2])[0]])  # fmt: skip
    groups = torch.tensor([10, 11, 11, 12])
    queries = one_hot([0, 1, 1, 3])  # query 3 resembles no report: a miss
    assert recall_at_k(queries, texts, same_group(groups, groups), ks=(1,))[1] == 75.0
    assert recall_at_k(queries, texts, torch.eye(4, dtype=torch.bool), ks=(1,))[1] == 50.0


def test_chance_recall_is_what_a_random_ranking_scores():
    one_relevant = torch.eye(10, dtype=torch.bool)
    assert chance_recall_at_k(one_relevant, ks=(1, 5, 10)) == pytest.approx({1: 10.0, 5: 50.0, 10: 100.0})
    # two relevant among four: a random top 1 hits half the time, a random top 2 misses only 1 time in 6
    two_of_four = torch.tensor([[True, True, False, False]])
    assert chance_recall_at_k(two_of_four, ks=(1, 2)) == pytest.approx({1: 50.0, 2: 100.0 * 5 / 6})
    generator = torch.Generator().manual_seed(0)
    relevant = torch.rand(50, 40, generator=generator) < 0.1
    relevant[:, 0] = True
    random_hits = torch.stack([
        torch.tensor(list(recall_at_k(torch.randn(50, 8, generator=generator), torch.randn(40, 8, generator=generator),
                                      relevant, ks=(1, 5)).values()))
        for _ in range(300)
    ]).mean(0)  # fmt: skip
    expected = chance_recall_at_k(relevant, ks=(1, 5))
    assert random_hits.tolist() == pytest.approx([expected[1], expected[5]], abs=2.0)


def test_pair_relevance_allows_several_ecgs_per_cxr():
    cxr_rows, ecg_rows, relevant = pair_relevance([(4, 7), (4, 9), (2, 7)])
    assert cxr_rows == [2, 4] and ecg_rows == [7, 9]
    assert relevant.tolist() == [[True, False], [True, True]]


def test_recall_rejects_mismatched_relevance_and_empty_queries():
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(one_hot([0, 1]), one_hot([0, 1, 2]), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one query"):
        recall_at_k(torch.zeros(0, 6), one_hot([0]), torch.zeros(0, 1, dtype=torch.bool))


def test_flat_keys_and_table_agree():
    metrics = {**flat_recalls("cxr_to_ecg", {1: 12.5, 5: 50.0, 10: 75.0}), "eval_ecg_to_text/recall@1": 3.0}
    assert metrics["cxr_to_ecg/recall@5"] == 50.0
    assert recall_table(metrics) == {
        "CXR -> ECG": {1: "12.5", 5: "50.0", 10: "75.0"},
        "ECG -> text": {1: "3.0", 5: "-", 10: "-"},
    }


def test_recall_figure_is_a_png(tmp_path):
    path = plot_recalls(flat_recalls("cxr_to_text", {1: 40.0, 5: 70.0, 10: 90.0}), tmp_path / "recall.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200
    with pytest.raises(ValueError, match="no"):
        plot_recalls({"rsum": 1.0}, tmp_path / "empty.png")


def test_model_card_reports_results_and_flags_synthetic_training():
    metrics = flat_recalls("cxr_to_ecg", {1: 31.25, 5: 60.0, 10: 80.0})
    card = render_model_card(
        MedBindConfig.from_preset("tiny", variant="nm"),
        metrics,
        {"epochs": 3},
        repo_id="org/medbind-demo",
        training_description="Synthetic patients.",
        synthetic=True,
    )
    text = str(card)
    assert "| CXR -> ECG | 31.2 | 60.0 | 80.0 |" in text
    with_chance = render_model_card(MedBindConfig.from_preset("tiny"), {**metrics, "cxr_to_ecg/chance@1": 2.5}, {},
                                    "org/m", "Synthetic.", synthetic=True)  # fmt: skip
    assert "| CXR -> ECG | 31.2 (chance 2.5) | 60.0 | 80.0 |" in str(with_chance)
    assert "SYNTHETIC" in text and "MEDBind_NM" in text and "org/medbind-demo" in text
    assert card.data.tags and "synthetic" in card.data.tags
    real = render_model_card(MedBindConfig.from_preset("tiny"), metrics, {}, "org/m", "MIMIC.", synthetic=False)
    assert "SYNTHETIC" not in str(real)
