"""Tests of modeling_medbind/tokenization_medbind.py: word truncation and the offline tokenizer."""

import pytest

from modeling_medbind.tokenization_medbind import (
    BERT_SPECIAL_TOKENS,
    load_text_tokenizer,
    train_wordpiece_tokenizer,
    truncate_words,
)

REPORTS = [
    "Heart size is normal. The lungs are clear.",
    "No pleural effusion or pneumothorax. Heart size is normal.",
    "Sinus rhythm. Left ventricular hypertrophy with repolarization abnormality.",
    "Mild cardiomegaly. Small left pleural effusion.",
]


def test_truncate_words_keeps_the_first_words_joined_by_single_spaces():
    text = "one  two\nthree\tfour five"
    assert truncate_words(text, max_words=3) == "one two three"


def test_truncate_words_keeps_a_short_report_whole():
    assert truncate_words("Lungs are clear.", max_words=100) == "Lungs are clear."


def test_paper_default_keeps_one_hundred_words():
    words = [f"w{index}" for index in range(150)]
    assert truncate_words(" ".join(words)).split() == words[:100]


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_report_is_an_error_naming_it(text):
    with pytest.raises(ValueError, match="report 7 is empty"):
        truncate_words(text, name="report 7")


def test_non_string_report_is_an_error():
    with pytest.raises(ValueError, match="must be a string, got NoneType"):
        truncate_words(None)


def test_zero_word_limit_is_an_error():
    with pytest.raises(ValueError, match="max_words"):
        truncate_words("text", max_words=0)


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


def test_corpus_without_text_is_an_error():
    with pytest.raises(ValueError, match="at least one non-blank"):
        train_wordpiece_tokenizer(["", "  "])


def test_hub_identifier_fails_offline_naming_it_and_hf_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"'medbind-tests/no-such-tokenizer'.*HF_HUB_OFFLINE"):
        load_text_tokenizer("medbind-tests/no-such-tokenizer")
