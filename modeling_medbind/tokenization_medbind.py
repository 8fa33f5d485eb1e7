"""Report text for MedBind: the paper's 100-word truncation and the BERT tokenizer.

The paper tokenises every report with BioBERT (`dmis-lab/biobert-v1.1`) after cutting it to its first 100 words.
That vocabulary cannot be downloaded where there is no network (CI, air-gapped hospital machines), so
[`train_wordpiece_tokenizer`] trains a small WordPiece vocabulary of the same kind on local report text, and
[`load_text_tokenizer`] loads either one with a clear error when a Hub identifier cannot be reached.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

from .hub_loading import hub_offline, load_pretrained

BIOBERT_IDENTIFIER = "dmis-lab/biobert-v1.1"
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDPIECE_PREFIX = "##"  # marks a piece that continues a word, as in BERT's vocabularies


def truncate_words(text: str, max_words: int = 100, name: str = "report") -> str:
    """Keep the first `max_words` whitespace-separated words of a report, joined by single spaces.

    The paper truncates every report to its first 100 words before tokenising (method.md, Model).

    Args:
        text: one report.
        max_words: how many words to keep (at least 1).
        name: how the report is named in error messages (e.g. `"report 3 of the batch"`).

    Returns:
        The truncated report; runs of whitespace (newlines, tabs) become one space.

    Raises:
        ValueError: `text` is not a string, is empty or only whitespace, or `max_words` < 1.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")
    words = text.split()
    if not words:
        raise ValueError(f"{name} is empty or whitespace-only ({text!r}); every sample needs a report text")
    return " ".join(words[:max_words])


def train_wordpiece_tokenizer(
    corpus: Iterable[str],
    vocab_size: int = 2048,
    min_frequency: int = 1,
    lowercase: bool = False,
    model_max_length: int = 256,
) -> BertTokenizerFast:
    """Train a small BERT WordPiece tokenizer on report texts, for offline demos and tests.

    BioBERT v1.1's vocabulary is cased (it was initialised from BERT-base-cased), so the default keeps case too:
    the offline tokenizer then sees text the way the real one does. The vocabulary is learned as the `tokenizers`
    WordPiece trainer learns it (BERT normalisation and pre-tokenisation, then pair merges by frequency;
    `wordpiece_vocabulary`), but with frequency ties broken by the pieces' text: the Rust trainer breaks them in
    hash-map order, which changes from process to process (huggingface/tokenizers#1794), so two runs on the same
    reports gave two vocabularies and two different models.

    Args:
        corpus: report texts (any iterable; consumed once).
        vocab_size: size of the vocabulary, special tokens included.
        min_frequency: minimum count for a merge to enter the vocabulary.
        lowercase: lower-case text before splitting (BERT-uncased style).
        model_max_length: the tokenizer's default truncation length.

    Returns:
        A `BertTokenizerFast` with BERT's special tokens (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, ids 0-4),
        ready for `save_pretrained` / `AutoTokenizer.from_pretrained`; the same corpus gives the same vocabulary,
        ids included, in every process.

    Raises:
        ValueError: the corpus holds no non-blank text.
    """
    # Imported here because only this offline path needs the pipeline pieces; loading a saved tokenizer does not.
    from tokenizers import BertWordPieceTokenizer

    texts = [text for text in corpus if isinstance(text, str) and text.strip()]
    if not texts:
        raise ValueError("train_wordpiece_tokenizer needs a corpus with at least one non-blank report text")
    pipeline = BertWordPieceTokenizer(lowercase=lowercase)._tokenizer
    word_counts = Counter(
        word
        for text in texts
        for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text))
    )
    vocabulary = wordpiece_vocabulary(word_counts, vocab_size, min_frequency, list(BERT_SPECIAL_TOKENS))
    wordpiece = BertWordPieceTokenizer(vocab={token: i for i, token in enumerate(vocabulary)}, lowercase=lowercase)
    return BertTokenizerFast(
        tokenizer_object=wordpiece._tokenizer, do_lower_case=lowercase, model_max_length=model_max_length
    )


def wordpiece_vocabulary(
    word_counts: Mapping[str, int],
    vocab_size: int,
    min_frequency: int = 1,
    special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS,
    prefix: str = WORDPIECE_PREFIX,
) -> list[str]:
    """A WordPiece vocabulary learned by greedy pair merges, deterministically.

    As the `tokenizers` WordPiece trainer: every word starts as its first character followed by its other
    characters with the continuation `prefix` (`"##"`); the vocabulary is the special tokens, the characters, the
    continuation characters, then, merge after merge, the most frequent adjacent pair of pieces (counted over the
    words, weighted by word count) joined into one piece, until `vocab_size` pieces or no pair seen
    `min_frequency` times. Equally frequent pairs are merged in the order of their pieces' text, so the result is a
    function of the counts alone.

    Args:
        word_counts: `{word: count}` of pre-tokenised words (no spaces).
        vocab_size: the most pieces to return, special tokens included.
        min_frequency: the fewest occurrences for a pair to be merged.
        special_tokens: put first, in this order.
        prefix: the mark of a piece that continues a word.

    Returns:
        The pieces in id order.
    """
    words = sorted(word_counts)
    counts = [word_counts[word] for word in words]
    pieces = [[word[0]] + [prefix + character for character in word[1:]] for word in words]
    vocabulary = list(special_tokens)
    seen = set(vocabulary)
    # Characters, then continuation characters, each sorted: the order no longer depends on the corpus's order.
    for alphabet in (sorted({p[0] for p in pieces}), sorted({piece for p in pieces for piece in p[1:]})):
        vocabulary += [piece for piece in alphabet if piece not in seen]
        seen.update(alphabet)
    pair_counts: Counter[tuple[str, str]] = Counter()
    pair_words: dict[tuple[str, str], set[int]] = defaultdict(set)
    for index, word_pieces in enumerate(pieces):
        for pair in pairwise(word_pieces):
            pair_counts[pair] += counts[index]
            pair_words[pair].add(index)
    # Max-heap on (count, then the pair's text ascending); stale entries are skipped when popped.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    while len(vocabulary) < vocab_size and heap:
        negative_count, pair = heapq.heappop(heap)
        if -negative_count != pair_counts.get(pair, 0):
            continue
        if -negative_count < min_frequency:
            break
        merged = pair[0] + pair[1].removeprefix(prefix)
        if merged not in seen:
            vocabulary.append(merged)
            seen.add(merged)
        changed: Counter[tuple[str, str]] = Counter()
        for index in sorted(pair_words.pop(pair)):
            old = pieces[index]
            new, position = [], 0
            while position < len(old):
                if position + 1 < len(old) and (old[position], old[position + 1]) == pair:
                    new.append(merged)
                    position += 2
                else:
                    new.append(old[position])
                    position += 1
            for gone in pairwise(old):
                changed[gone] -= counts[index]
            for added in pairwise(new):
                changed[added] += counts[index]
                pair_words[added].add(index)
            pieces[index] = new
        for changed_pair, delta in changed.items():
            if delta:
                pair_counts[changed_pair] += delta
                if pair_counts[changed_pair] > 0:
                    heapq.heappush(heap, (-pair_counts[changed_pair], changed_pair))
                else:
                    del pair_counts[changed_pair]
        pair_counts.pop(pair, None)
    return vocabulary


def load_text_tokenizer(identifier: str | os.PathLike = BIOBERT_IDENTIFIER, **kwargs) -> PreTrainedTokenizerBase:
    """Load the report tokenizer from a local directory or a Hub identifier (BioBERT by default).

    `HF_HUB_OFFLINE` is read when this is called (huggingface_hub reads it once, at import), so setting it in a
    running process still stops any download attempt.

    Args:
        identifier: a directory written by `save_pretrained` or a Hub model id.
        **kwargs: passed to `AutoTokenizer.from_pretrained`.

    Returns:
        The tokenizer.

    Raises:
        FileNotFoundError: the identifier is neither a local tokenizer directory nor reachable on the Hub (offline
            mode, no network or unknown id); the message names the identifier and `HF_HUB_OFFLINE`.
    """
    if str(identifier) == BIOBERT_IDENTIFIER:
        # BioBERT v1.1 is cased but ships no tokenizer_config.json, and BertTokenizer lower-cases by default.
        kwargs.setdefault("do_lower_case", False)
    local_files_only = hub_offline() or kwargs.pop("local_files_only", False)
    return load_pretrained(
        identifier,
        lambda: AutoTokenizer.from_pretrained(identifier, local_files_only=local_files_only, **kwargs),
        "the text tokenizer",
        "Pass a local directory instead, e.g. one written by train_wordpiece_tokenizer(reports).save_pretrained(path).",
    )
