"""Tests of training/medbind_training/text_groups.py: the ids that mark identical reports as TMCL positives."""

import hashlib

import pytest
from samples import REPORTS

from medbind_training.text_groups import text_group_ids

WORDS = 100  # longer than every report here: no truncation


def test_group_id_is_blake2b_of_the_normalised_report_as_signed_int64():
    expected = int.from_bytes(hashlib.blake2b(b"heart size is normal.", digest_size=8).digest(), "little", signed=True)
    assert text_group_ids(["  Heart SIZE is\nnormal. "], WORDS) == [expected]


def test_reports_differing_only_in_case_and_whitespace_share_a_group_id():
    ids = text_group_ids(["Heart size is normal.", "heart  size is\nNORMAL.", "Heart size is enlarged."], WORDS)
    assert ids[0] == ids[1] != ids[2]


def test_reports_identical_in_their_first_max_words_share_a_group_id():
    ids = text_group_ids(["a b c d extra words", "a b c d other words"], max_words=4)
    assert ids[0] == ids[1]
    assert text_group_ids(["a b c d extra words", "a b c d other words"], max_words=5)[0] != ids[0]


def test_group_ids_of_distinct_reports_are_distinct_and_fit_int64():
    ids = text_group_ids(REPORTS, WORDS)
    assert len(set(ids)) == len(REPORTS)
    assert all(-(2**63) <= value < 2**63 for value in ids)


def test_group_ids_name_the_empty_report():
    with pytest.raises(ValueError, match="report 1 is empty"):
        text_group_ids(["fine", " "], WORDS)
