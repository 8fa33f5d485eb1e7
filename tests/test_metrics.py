"""The metric modules of training/metrics: hand-made cases with known answers, loaded as `evaluate` modules."""

import numpy as np
import pytest

from medbind_training.metrics import (
    CHANCE_AUROC,
    accuracy,
    balanced_accuracy,
    chance_accuracy,
    chance_balanced_accuracy,
    load_metric,
    macro_auroc,
)


@pytest.fixture(scope="module")
def metrics():
    return {"balanced_accuracy": load_metric("balanced_accuracy"), "binary_auroc": load_metric("auroc"),
            "auroc": load_metric("auroc", "multiclass"), "recall_at_k": load_metric("recall_at_k")}  # fmt: skip


def shuffled(values, seed=0):
    return np.random.default_rng(seed).permutation(values)


def test_modules_load_from_the_package_without_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    perfect = load_metric("balanced_accuracy").compute(predictions=[1, 0], references=[1, 0])
    assert perfect == {"balanced_accuracy": 100.0}
    with pytest.raises(ValueError, match="unknown MedBind metric"):
        load_metric("f1")


def test_balanced_accuracy_is_the_mean_recall_per_class(metrics):
    # class 0: 3 of 4 right, class 1: 1 of 1 right -> (75 + 100) / 2; plain accuracy would say 80
    result = metrics["balanced_accuracy"].compute(predictions=[0, 0, 0, 1, 1], references=[0, 0, 0, 0, 1])
    assert result["balanced_accuracy"] == pytest.approx(87.5)


def test_balanced_accuracy_is_100_when_perfect_and_chance_when_shuffled_or_constant(metrics):
    references = np.repeat([0, 1, 2, 3], [500, 300, 150, 50])
    perfect = metrics["balanced_accuracy"].compute(predictions=references, references=references)
    assert perfect["balanced_accuracy"] == 100.0
    # the majority class everywhere: 25 % balanced (50 % plain accuracy)
    majority = metrics["balanced_accuracy"].compute(predictions=np.zeros_like(references), references=references)
    assert majority["balanced_accuracy"] == pytest.approx(25.0) == chance_balanced_accuracy(references)
    permuted = [balanced_accuracy(shuffled(references, seed), references) for seed in range(20)]
    assert np.mean(permuted) == pytest.approx(25.0, abs=1.5)


def test_accuracy_rewards_the_majority_class_up_to_its_chance_level():
    references = np.repeat([0, 1], [730, 270])
    module = load_metric("accuracy")
    assert module.compute(predictions=references, references=references) == {"accuracy": 100.0}
    majority = module.compute(predictions=np.zeros_like(references), references=references)["accuracy"]
    assert majority == pytest.approx(73.0) == pytest.approx(chance_accuracy(references))
    # a shuffled prediction agrees 0.73^2 + 0.27^2 = 60.6 % of the time: below the majority-class chance
    permuted = [accuracy(shuffled(references, seed), references) for seed in range(20)]
    assert np.mean(permuted) == pytest.approx(60.6, abs=1.5)
    with pytest.raises(ValueError, match="accuracy needs"):
        accuracy([0, 1], [0, 1, 1])


def test_balanced_accuracy_scores_many_classifiers_at_once():
    references = np.array([0, 0, 1, 1])
    predictions = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 0, 0]])
    assert balanced_accuracy(predictions, references).tolist() == [100.0, 75.0, 0.0]
    with pytest.raises(ValueError, match="references"):
        balanced_accuracy([0, 1], [0, 1, 1])


def test_auroc_is_100_for_a_perfect_ranking_and_50_for_ties_or_shuffles(metrics):
    references = np.array([0, 0, 0, 1, 1])
    perfect = metrics["binary_auroc"].compute(prediction_scores=[0.1, 0.2, 0.3, 0.8, 0.9], references=references)
    assert perfect["auroc"] == 100.0
    # every score tied: each positive-negative pair counts one half
    constant = metrics["binary_auroc"].compute(prediction_scores=[0.5] * 5, references=references)
    assert constant["auroc"] == CHANCE_AUROC == 50.0
    # one tie between a positive and a negative among 6 pairs: (5 + 0.5) / 6
    assert macro_auroc([0.1, 0.2, 0.8, 0.8, 0.9], references) == pytest.approx(100 * 5.5 / 6)
    labels = np.repeat([0, 1], 500)
    assert macro_auroc(shuffled(np.linspace(0, 1, 1000)), labels) == pytest.approx(50.0, abs=5.0)


def test_multiclass_auroc_is_the_macro_mean_of_one_vs_rest_columns(metrics):
    scores = np.array([[0.9, 0.0, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.3, 0.6, 0.1]])
    references = [0, 1, 2, 1]
    assert metrics["auroc"].compute(prediction_scores=scores, references=references)["auroc"] == 100.0
    # swapping the first two columns: class 0's one row now scores below all three others (0), class 1's rows
    # (0.1, 0.3) beat one of four negative pairings (0.3 > 0.2: 25), class 2 is untouched (100)
    swapped = scores[:, [1, 0, 2]]
    assert macro_auroc(swapped, references) == pytest.approx((0.0 + 25.0 + 100.0) / 3)
    with pytest.raises(ValueError, match="two classes"):
        macro_auroc(scores[:1], [0])


def test_recall_at_k_counts_any_relevant_candidate_within_k(metrics):
    predictions = [[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.9, 0.5, 0.1]]
    references = [[0], [1], [1, 2]]
    result = metrics["recall_at_k"].compute(predictions=predictions, references=references, k=[1, 2, 3])
    assert result == pytest.approx({"recall@1": 100 / 3, "recall@2": 100.0, "recall@3": 100.0})


def test_recall_at_k_breaks_ties_at_random_in_expectation(metrics):
    # all four candidates tied, one relevant: a random top 1 hits 1 time in 4, a random top 2 half the time
    tied = metrics["recall_at_k"].compute(predictions=[[0.5] * 4], references=[[3]], k=[1, 2, 4])
    assert tied == pytest.approx({"recall@1": 25.0, "recall@2": 50.0, "recall@4": 100.0})
    # one candidate strictly above, then the relevant one tied with another: rank 2 or 3 with equal odds
    partly = metrics["recall_at_k"].compute(predictions=[[0.9, 0.5, 0.5, 0.1]], references=[[2]], k=[1, 2, 3])
    assert partly == pytest.approx({"recall@1": 0.0, "recall@2": 50.0, "recall@3": 100.0})


def test_recall_at_k_is_100_when_perfect_and_chance_when_shuffled(metrics):
    similarity = np.eye(50) + 0.01 * np.random.default_rng(0).random((50, 50))
    references = [[i] for i in range(50)]
    perfect = metrics["recall_at_k"].compute(predictions=similarity, references=references)
    assert perfect == {"recall@1": 100.0, "recall@5": 100.0, "recall@10": 100.0}
    random_rows = np.random.default_rng(1).random((2000, 50))
    chance = metrics["recall_at_k"].compute(predictions=random_rows, references=[[0]] * 2000)
    assert chance == pytest.approx({"recall@1": 2.0, "recall@5": 10.0, "recall@10": 20.0}, abs=1.5)
