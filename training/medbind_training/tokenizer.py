"""An offline report tokenizer: a small BERT WordPiece vocabulary trained on local report text, as the paper's BioBERT
vocabulary cannot be downloaded without a network (CI, air-gapped hospital machines).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizerFast

from modeling_medbind.configuration_medbind import TRAINED_VOCAB_SIZE

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDPIECE_PREFIX = "##"  # marks a piece that continues a word, as in BERT's vocabularies


def train_wordpiece_tokenizer(
    corpus: Iterable[str], vocab_size: int = TRAINED_VOCAB_SIZE, model_max_length: int = 256
) -> BertTokenizerFast:
    """Train a small BERT WordPiece tokenizer on report texts, for offline demos and tests.

    BioBERT v1.1's vocabulary is cased (it was initialised from BERT-base-cased), so this one keeps case too:
    the offline tokenizer then sees text the way the real one does. The vocabulary is learned as the `tokenizers`
    WordPiece trainer learns it (BERT normalisation and pre-tokenisation, then pair merges by frequency;
    `wordpiece_vocabulary`), but with frequency ties broken by the pieces' text: the Rust trainer breaks them in
    hash-map order, which changes from process to process (huggingface/tokenizers#1794), so two runs on the same
    reports gave two vocabularies and two different models. `vocab_size` counts the special tokens (BERT's, ids 0-4).
    """
    texts = [text for text in corpus if isinstance(text, str) and text.strip()]
    if not texts:
        raise ValueError("train_wordpiece_tokenizer needs a corpus with at least one non-blank report text")
    pipeline = BertWordPieceTokenizer(lowercase=False)._tokenizer
    word_counts = Counter(
        word
        for text in texts
        for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text))
    )
    vocabulary = {token: i for i, token in enumerate(wordpiece_vocabulary(word_counts, vocab_size))}
    wordpiece = BertWordPieceTokenizer(vocab=vocabulary, lowercase=False)._tokenizer
    return BertTokenizerFast(tokenizer_object=wordpiece, do_lower_case=False, model_max_length=model_max_length)


def wordpiece_vocabulary(
    word_counts: Mapping[str, int],
    vocab_size: int,
    min_frequency: int = 1,
    special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS,
) -> list[str]:
    """A WordPiece vocabulary learned by greedy pair merges as the `tokenizers` trainer learns it, but with equally
    frequent pairs merged in the order of their pieces' text: every word starts as its first character followed by its
    other characters with the continuation prefix `"##"`; the vocabulary is the special tokens, the characters, the
    continuation characters, then, merge after merge, the most frequent adjacent pair of pieces (weighted by word
    count) joined into one piece, until `vocab_size` pieces or no pair seen `min_frequency` times. Returns the pieces
    in id order, `special_tokens` first.
    """
    words = sorted(word_counts)
    counts = [word_counts[word] for word in words]
    pieces = [[word[0]] + [WORDPIECE_PREFIX + character for character in word[1:]] for word in words]
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
        merged = pair[0] + pair[1].removeprefix(WORDPIECE_PREFIX)
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
