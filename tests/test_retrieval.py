"""Recall@K over embeddings (training/medbind_training/retrieval.py): hits, identical reports, ties, chance, blocks, pairs."""

import pytest
import torch
import torch.nn.functional as F

from medbind_training.retrieval import (
    RECALL_KS,
    RetrievalProtocol,
    chance_recall_at_k,
    first_of_group,
    gallery_recall_at_k,
    hit_probability,
    pair_groups,
    protocol_recall_at_k,
    random_galleries,
    recall_at_k,
    recall_keys,
)


def one_hot(indices, dim=6):
    return F.one_hot(torch.tensor(indices), dim).float()


def test_recall_counts_a_hit_within_the_top_k():
    candidates = F.normalize(torch.eye(4) + 0.1, dim=-1)
    # query 0 is candidate 0 itself; query 1 points between candidates 2 (closest) and 1 (second)
    queries = F.normalize(torch.tensor([[1.0, 0, 0, 0], [0, 0.6, 0.8, 0]]), dim=-1)
    recalls = recall_at_k(queries, candidates, torch.tensor([0, 1]), torch.arange(4), ks=(1, 2, 10))
    assert recalls == {1: 50.0, 2: 100.0, 10: 100.0}


def test_identical_reports_count_as_hits():
    # rows 1 and 2 carry the same report; row 1 is ranked first for query 2, whose own row is 2
    texts = torch.stack([one_hot([0])[0], one_hot([1])[0], F.normalize(one_hot([1])[0] + 0.1 * one_hot([4])[0], dim=0),
                         one_hot([2])[0]])  # fmt: skip
    queries = one_hot([0, 1, 1, 0])  # query 3 resembles report 0, not its own: a miss
    groups = torch.tensor([10, 11, 11, 12])
    assert recall_at_k(queries, texts, groups, groups, ks=(1,))[1] == 75.0
    assert recall_at_k(queries, texts, torch.arange(4), torch.arange(4), ks=(1,))[1] == 50.0


def test_ties_are_broken_at_random_in_expectation():
    # a model that embeds everything alike scores exactly the chance level, neither 0 nor 100
    same = F.normalize(torch.ones(8, 4), dim=-1)
    groups = torch.arange(8)
    assert recall_at_k(same, same, groups, groups, ks=(1, 4)) == pytest.approx({1: 12.5, 4: 50.0})
    assert chance_recall_at_k(groups, groups, ks=(1, 4)) == pytest.approx({1: 12.5, 4: 50.0})
    # one candidate strictly above, then the relevant one tied with one other: rank 2 or 3, even odds
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1]])
    relevant = torch.tensor([[False, False, True, False]])
    assert hit_probability(scores, relevant, ks=(1, 2, 3)).tolist() == [[0.0, 0.5, 1.0]]
    # no relevant candidate: never a hit
    assert hit_probability(scores, torch.zeros_like(relevant), ks=(4,)).tolist() == [[0.0]]


def test_chance_recall_is_what_a_random_ranking_scores():
    distinct = torch.arange(10)
    assert chance_recall_at_k(distinct, distinct, ks=(1, 5, 10)) == pytest.approx({1: 10.0, 5: 50.0, 10: 100.0})
    # two relevant among four: a random top 1 hits half the time, a random top 2 misses only 1 time in 6
    two_of_four = chance_recall_at_k(torch.tensor([7]), torch.tensor([7, 7, 1, 2]), ks=(1, 2))
    assert two_of_four == pytest.approx({1: 50.0, 2: 100.0 * 5 / 6})
    generator = torch.Generator().manual_seed(0)
    query_groups = torch.randint(0, 8, (60,), generator=generator)
    candidate_groups = torch.randint(0, 8, (40,), generator=generator)
    random_hits = torch.stack([
        torch.tensor(list(recall_at_k(torch.randn(60, 8, generator=generator), torch.randn(40, 8, generator=generator),
                                      query_groups, candidate_groups, ks=(1, 5)).values()))
        for _ in range(300)
    ]).mean(0)  # fmt: skip
    expected = chance_recall_at_k(query_groups, candidate_groups, ks=(1, 5))
    assert random_hits.tolist() == pytest.approx([expected[1], expected[5]], abs=2.0)
    # a query whose group no candidate has can never hit
    assert chance_recall_at_k(torch.tensor([99]), torch.tensor([1, 2]), ks=(1,)) == {1: 0.0}


def test_scoring_in_blocks_gives_the_same_recall_as_one_pass():
    generator = torch.Generator().manual_seed(1)
    queries = F.normalize(torch.randn(97, 16, generator=generator), dim=-1)
    candidates = F.normalize(queries + 0.8 * torch.randn(97, 16, generator=generator), dim=-1)
    groups = torch.arange(97) // 3  # three rows per group: several hits per query
    whole = recall_at_k(queries, candidates, groups, groups)
    blocks = recall_at_k(queries, candidates, groups, groups, block_elements=97 * 5)  # 5 query rows per block
    assert blocks == pytest.approx(whole)
    assert sorted(whole) == list(RECALL_KS) and 0.0 < whole[1] < 100.0


def test_pair_groups_number_the_pairs_and_reject_shared_rows():
    cxr_rows, ecg_rows, groups = pair_groups([(4, 7), (2, 9)])
    assert (cxr_rows, ecg_rows, groups.tolist()) == ([4, 2], [7, 9], [0, 1])
    with pytest.raises(ValueError, match="disjoint"):
        pair_groups([(4, 7), (4, 9)])


def test_recall_rejects_mismatched_groups_and_empty_queries():
    with pytest.raises(ValueError, match="group id per row"):
        recall_at_k(one_hot([0, 1]), one_hot([0, 1, 2]), torch.arange(2), torch.arange(2))
    with pytest.raises(ValueError, match="at least one query"):
        recall_at_k(torch.zeros(0, 6), one_hot([0]), torch.zeros(0, dtype=torch.long), torch.arange(1))


def test_recall_keys_are_the_flat_keys_of_results_json():
    assert recall_keys("retrieval/pairs/cxr_to_ecg", {1: 12.5, 10: 75.0}) == {
        "retrieval/pairs/cxr_to_ecg/recall@1": 12.5, "retrieval/pairs/cxr_to_ecg/recall@10": 75.0}
    chance = recall_keys("retrieval/ecg/ecg_to_text", {1: 2.0}, name="chance")
    assert chance == {"retrieval/ecg/ecg_to_text/chance@1": 2.0}


def identical_report_split():
    """Three rows: rows 0 and 1 carry the same report (their text embeddings differ by batch rounding only), row 2
    another; every sample embeds exactly as its report."""
    report_a, report_b = one_hot([0])[0], one_hot([1])[0]
    texts = torch.stack([report_a, F.normalize(report_a + 1e-4 * one_hot([5])[0], dim=0), report_b])
    return texts.clone(), texts, torch.tensor([7, 7, 9])


def test_the_two_positive_rules_give_their_hand_computed_recalls():
    queries, texts, groups = identical_report_split()
    identical = protocol_recall_at_k(queries, texts, groups, RetrievalProtocol("identical_text"), ks=(1, 2))
    instance = protocol_recall_at_k(queries, texts, groups, RetrievalProtocol("instance"), ks=(1, 2))
    # identical_text: either copy of report A is a hit for rows 0 and 1: every query hits at 1.
    assert identical[0] == pytest.approx({1: 100.0, 2: 100.0})
    # instance: rows 0 and 1 each tie with the other's copy (hit@1 with probability 1/2), row 2 hits: (1/2 + 1/2
    # + 1) / 3; at K=2 both copies are in. The rounding between the copies does not decide the tie.
    assert instance[0] == pytest.approx({1: 200.0 / 3, 2: 100.0})
    # chance: identical_text has 2 of 3 candidates relevant for rows 0, 1 (2/3 at K=1, certain at K=2) and 1 of 3
    # for row 2 (1/3, and 1 - 2/3 * 1/2 = 2/3 at K=2); instance has 1 of 3 for every row.
    assert identical[1] == pytest.approx({1: 100.0 * (2 / 3 + 2 / 3 + 1 / 3) / 3, 2: 100.0 * (1 + 1 + 2 / 3) / 3})
    assert instance[1] == pytest.approx({1: 100.0 / 3, 2: 200.0 / 3})


def test_the_default_protocol_is_recall_at_k_with_identical_reports():
    generator = torch.Generator().manual_seed(3)
    queries = F.normalize(torch.randn(30, 8, generator=generator), dim=-1)
    texts = F.normalize(queries + torch.randn(30, 8, generator=generator), dim=-1)
    groups = torch.arange(30) // 2
    recalls, chances = protocol_recall_at_k(queries, texts, groups)
    assert recalls == recall_at_k(queries, texts, groups, groups)
    assert chances == chance_recall_at_k(groups, groups)


def distractor_split():
    """Four rows, each report distinct; sample 0 resembles report 1 more than its own, the others their own."""
    texts = one_hot([0, 1, 2, 3])
    queries = torch.stack([F.normalize(one_hot([0])[0] + 2 * one_hot([1])[0], dim=0), *one_hot([1, 2, 3])])
    return queries, texts, torch.arange(4)


def test_gallery_recall_ranks_each_query_within_its_gallery_only():
    queries, texts, groups = distractor_split()
    # Draw 1 puts row 1 (sample 0's distractor) in sample 0's gallery: 3 of 4 hit at K=1. Draw 2 separates them:
    # 4 of 4. Mean 87.5; with 2 candidates per gallery, chance at K=1 is 1/2, at K=2 certain.
    galleries = torch.tensor([[0, 1], [2, 3], [0, 2], [1, 3]])
    recalls, chances = gallery_recall_at_k(queries, texts, groups, galleries, ks=(1, 2))
    assert recalls == pytest.approx({1: 87.5, 2: 100.0})
    assert chances == pytest.approx({1: 50.0, 2: 100.0})
    # scoring one gallery per block gives the same
    assert gallery_recall_at_k(queries, texts, groups, galleries, ks=(1, 2), block_elements=4)[0] == recalls


def test_random_galleries_are_seeded_permutations_cut_into_fixed_sizes():
    galleries = random_galleries(10, 3, draws=4, seed=1)
    assert galleries.shape == (4 * 3, 3)
    for draw in galleries.view(4, 9):
        assert len(set(draw.tolist())) == 9  # each draw uses a row at most once; one row sits it out
    assert torch.equal(galleries, random_galleries(10, 3, draws=4, seed=1))
    assert not torch.equal(galleries, random_galleries(10, 3, draws=4, seed=2))
    with pytest.raises(ValueError, match="cannot be drawn"):
        random_galleries(3, 4, draws=1)


def test_fixed_size_galleries_average_to_the_hand_computed_expectation():
    # Galleries of 2 from 4 rows: sample 0 shares its gallery with its distractor (row 1) in 1 draw of 3, so its
    # expected recall@1 is 2/3 and the split's (2/3 + 3) / 4 = 91.67%. A gallery as large as the split is the
    # whole split: sample 0 always misses at K=1.
    queries, texts, groups = distractor_split()
    protocol = RetrievalProtocol("instance", gallery=2, draws=3000, seed=0)
    recalls, chances = protocol_recall_at_k(queries, texts, groups, protocol, ks=(1,))
    assert recalls[1] == pytest.approx(100.0 * (2 / 3 + 3) / 4, abs=1.0)
    assert chances == pytest.approx({1: 50.0})
    whole = protocol_recall_at_k(queries, texts, groups, RetrievalProtocol("instance", gallery=4), ks=(1,))
    assert whole[0] == pytest.approx({1: 75.0})


def test_protocol_arguments_and_their_description():
    assert RetrievalProtocol.from_arguments("identical_text", "all") == RetrievalProtocol()
    protocol = RetrievalProtocol.from_arguments("instance", "100", draws=5, seed=2)
    assert protocol == RetrievalProtocol("instance", 100, 5, 2)
    assert RetrievalProtocol().describe() == {"protocol/retrieval_positives": "identical_text",
                                              "protocol/retrieval_gallery": "all"}  # fmt: skip
    described = protocol.describe()
    assert (described["protocol/retrieval_gallery"], described["protocol/retrieval_gallery_draws"]) == ("100", "5")
    with pytest.raises(ValueError, match="positives must be one of"):
        RetrievalProtocol("same_report")
    with pytest.raises(ValueError, match="number of candidates"):
        RetrievalProtocol.from_arguments("instance", "everything")
    with pytest.raises(ValueError, match="at least 2"):
        RetrievalProtocol.from_arguments("instance", "1")
    with pytest.raises(ValueError, match="row-aligned"):
        protocol_recall_at_k(one_hot([0, 1]), one_hot([0]), torch.arange(2))


def test_first_of_group_points_each_row_at_its_groups_first_row():
    assert first_of_group(torch.tensor([5, 3, 5, 3, 8])).tolist() == [0, 1, 0, 1, 4]
