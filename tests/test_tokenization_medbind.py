"""Tests of modeling_medbind/tokenization_medbind.py (word truncation, loading) and the offline tokenizer trainer
(training/medbind_training/tokenizer.py)."""

import json
import subprocess
import sys

import pytest
from samples import REPORTS

from medbind_training.tokenizer import BERT_SPECIAL_TOKENS, train_wordpiece_tokenizer, wordpiece_vocabulary

from modeling_medbind.tokenization_medbind import load_text_tokenizer, truncate_words


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("one  two\nthree\tfour five", {"max_words": 3}, "one two three"),
        ("Lungs are clear.", {"max_words": 100}, "Lungs are clear."),
        (" ".join(f"w{index}" for index in range(150)), {}, " ".join(f"w{index}" for index in range(100))),
    ],
    ids=["first-words-single-spaces", "short-report-whole", "paper-default-100-words"],
)
def test_truncate_words_keeps_the_first_words_joined_by_single_spaces(text, options, expected):
    assert truncate_words(text, **options) == expected


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("", {"name": "report 7"}, "report 7 is empty"),
        ("   \n\t ", {"name": "report 7"}, "report 7 is empty"),
        (None, {}, "must be a string, got NoneType"),
        ("text", {"max_words": 0}, "max_words"),
    ],
)
def test_empty_non_string_or_zero_limit_is_an_error(text, options, message):
    with pytest.raises(ValueError, match=message):
        truncate_words(text, **options)


def test_trained_tokenizer_has_bert_special_tokens_and_keeps_case():
    tokenizer = train_wordpiece_tokenizer(REPORTS * 3, vocab_size=200)
    assert all(token in tokenizer.get_vocab() for token in BERT_SPECIAL_TOKENS)
    encoded = tokenizer("Heart size")["input_ids"]
    assert encoded[0] == tokenizer.cls_token_id and encoded[-1] == tokenizer.sep_token_id
    assert tokenizer.tokenize("Heart") != tokenizer.tokenize("heart")


def test_trained_tokenizer_round_trips_through_a_local_directory(tmp_path):
    tokenizer = train_wordpiece_tokenizer(REPORTS * 3, vocab_size=200, model_max_length=64)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_text_tokenizer(tmp_path)
    assert loaded(REPORTS)["input_ids"] == tokenizer(REPORTS)["input_ids"]
    assert loaded.model_max_length == 64


@pytest.mark.slow
def test_another_process_trains_the_same_vocabulary_with_the_same_ids():
    # The tokenizers trainer broke frequency ties in hash-map order, which changes with every process.
    script = (
        "import json, sys; from medbind_training.tokenizer import train_wordpiece_tokenizer; "
        "print(json.dumps(train_wordpiece_tokenizer(json.loads(sys.argv[1]), vocab_size=300).get_vocab()))"
    )
    corpus = REPORTS * 3 + ["Heart rate 72 bpm. QRS duration 148 ms.", "Heart rate 88 bpm. PR interval 250 ms."]
    other = subprocess.run(
        [sys.executable, "-c", script, json.dumps(corpus)], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(other) == train_wordpiece_tokenizer(corpus, vocab_size=300).get_vocab()


def test_equally_frequent_pairs_are_merged_in_the_order_of_their_text():
    # (c, ##d) and (a, ##b) are both seen twice: "ab" comes first, whatever the order of the counts.
    for counts in ({"cd": 2, "ab": 2}, {"ab": 2, "cd": 2}):
        assert wordpiece_vocabulary(counts, vocab_size=100, special_tokens=["[UNK]"]) == [
            "[UNK]", "a", "c", "##b", "##d", "ab", "cd"
        ]


def test_the_most_frequent_pair_is_merged_first_and_vocab_size_caps_the_merges():
    vocabulary = wordpiece_vocabulary({"xy": 1, "ab": 5}, vocab_size=6, special_tokens=["[UNK]"])
    assert vocabulary == ["[UNK]", "a", "x", "##b", "##y", "ab"]


def test_pairs_seen_fewer_than_min_frequency_times_are_not_merged():
    vocabulary = wordpiece_vocabulary({"ab": 3, "cd": 1}, vocab_size=100, min_frequency=2, special_tokens=[])
    assert "ab" in vocabulary and "cd" not in vocabulary


def test_corpus_words_become_single_tokens_and_new_words_fall_back_to_pieces():
    tokenizer = train_wordpiece_tokenizer(["cardiomegaly"] * 3 + ["cardiac"] * 2, vocab_size=100)
    assert tokenizer.tokenize("cardiomegaly cardiac") == ["cardiomegaly", "cardiac"]
    assert tokenizer.tokenize("cardio") == ["cardi", "##o"]


def test_corpus_without_text_is_an_error():
    with pytest.raises(ValueError, match="at least one non-blank"):
        train_wordpiece_tokenizer(["", "  "])


def test_hub_identifier_fails_offline_naming_it_and_hf_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"'medbind-tests/no-such-tokenizer'.*HF_HUB_OFFLINE"):
        load_text_tokenizer("medbind-tests/no-such-tokenizer")
