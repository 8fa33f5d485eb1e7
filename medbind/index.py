"""A searchable archive of MedBind embeddings: radiographs, ECGs and texts in one FAISS index, searched by example
across modalities ("the ECGs of patients whose radiograph looks like this one").

Layout of an index folder:

- `batches/batch-000000.safetensors`, ...: the embeddings of one batch (`embeddings [n, d]`) with each row's source
  and modality in the metadata. A batch file is written whole (to a temporary name, then renamed), so a killed run
  keeps every batch it finished and a re-run embeds only what no batch holds.
- `index.faiss` + `items.json`: the vector index over every batch (row `i` of the index is item `i` of
  `items.json`), rebuilt at the end of each run. Exact inner-product search (`IndexFlatIP`) below
  `EXACT_SEARCH_LIMIT` items; above it, or when asked, HNSW (`IndexHNSWFlat`), approximate (its recall@10 against
  exact search is measured by `benchmarks/bench_index.py`). Embeddings are L2-normalised, so scores are cosines.
- `index_config.json`: the model that embedded the items, the dimension and the index kind; a re-run with another
  model is refused rather than mixing two embedding spaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from modeling_medbind.configuration_medbind import MODALITIES

INDEX_CONFIG_FILE = "index_config.json"
FAISS_FILE = "index.faiss"
ITEMS_FILE = "items.json"
BATCHES_DIR = "batches"
EMBEDDINGS = "embeddings"
FILE_MODALITIES = MODALITIES  # items that are files, named by their absolute path; texts are their own name
INDEX_KINDS = ("auto", "flat", "hnsw")
# Below a million items an exact search answers in milliseconds per query on a CPU (benchmarks/README.md), so an
# approximate index would only cost recall.
EXACT_SEARCH_LIMIT = 1_000_000
HNSW_NEIGHBOURS = 32  # graph degree M; faiss's default construction depth
HNSW_SEARCH_DEPTH = 128  # efSearch: recall@10 0.998 on clustered 100k x 256-d (benchmarks/README.md)

# Embeds a batch of one modality: (modality, inputs) -> [len(inputs), d] L2-normalised embeddings.
EmbedFunction = Callable[[str, Sequence[str]], "np.ndarray"]


@dataclass(frozen=True)
class IndexedItem:
    """One indexed input: `source` (a file's absolute path, or the text) and its `modality`."""

    source: str
    modality: str


@dataclass(frozen=True)
class SearchHit:
    """One search result: its `rank` (1 = most similar), cosine `score`, `source` and `modality`."""

    rank: int
    score: float
    source: str
    modality: str


def item_source(modality: str, item: str) -> str:
    """The name an input is indexed under: a file's absolute path (so `a.png` and `./a.png` are one item), a text
    as it is."""
    return str(Path(item).resolve()) if modality in FILE_MODALITIES else item


def build_index(
    folder: str | os.PathLike,
    inputs: Mapping[str, Sequence[str]],
    embed: EmbedFunction,
    model: str,
    batch_size: int = 64,
    kind: str = "auto",
    progress: bool = True,
) -> EmbeddingIndex:
    """
    Embed `inputs` into the index at `folder` in batches, then (re)build its vector index. Inputs that a batch of an
    earlier run holds are skipped (see the module docstring); an input given twice is embedded once.

    Args:
        inputs: `{modality: [file path or text, ...]}`.
        embed: embeds one batch of one modality (e.g. the `medbind` CLI's `embed_inputs`).
        model: the model's name, kept in `index_config.json`; a folder built with another model is refused.
        batch_size: inputs per `embed` call and per batch file.
        kind: `"flat"` (exact), `"hnsw"` (approximate), or `"auto"`: flat below `EXACT_SEARCH_LIMIT` items.

    Raises:
        ValueError: an unknown modality or kind, another model than the folder's, or embeddings of the wrong shape.
        Whatever `embed` raises for an unreadable input; the batches written before it stay.
    """
    folder = Path(folder)
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    unknown = set(inputs) - {"cxr", "ecg", "text"}
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; expected cxr, ecg or text")
    (folder / BATCHES_DIR).mkdir(parents=True, exist_ok=True)
    config = _checked_config(folder, model, kind)
    indexed = {item for _, items in _read_batches(folder) for item in items}
    pending: dict[str, dict[str, str]] = {}  # modality -> {source: the input as given}, first occurrence kept
    for modality, items in inputs.items():
        for item in items:
            source = item_source(modality, item)
            if IndexedItem(source, modality) not in indexed:
                pending.setdefault(modality, {}).setdefault(source, item)
    total = len(indexed) + sum(map(len, pending.values()))
    number = len(_batch_files(folder))
    with tqdm(total=total, initial=len(indexed), desc="indexing", unit="item", disable=not progress) as bar:
        for modality, items in pending.items():
            order = list(items)
            for start in range(0, len(order), batch_size):
                sources = order[start : start + batch_size]
                embeds = np.asarray(embed(modality, [items[source] for source in sources]), dtype=np.float32)
                config = _check_embeddings(folder, config, embeds, len(sources))
                _write_batch(folder / BATCHES_DIR / f"batch-{number:06d}.safetensors", embeds, sources, modality)
                number += 1
                bar.update(len(sources))
    return write_faiss_index(folder)


def new_faiss_index(dimension: int, kind: str, count: int) -> faiss.Index:
    """An empty inner-product index for `count` vectors: `IndexFlatIP` (exact) for `kind="flat"`, `IndexHNSWFlat`
    for `"hnsw"`, and for `"auto"` flat below `EXACT_SEARCH_LIMIT` vectors."""
    if kind == "auto":
        kind = "flat" if count < EXACT_SEARCH_LIMIT else "hnsw"
    if kind == "flat":
        return faiss.IndexFlatIP(dimension)
    index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_SEARCH_DEPTH
    return index


def write_faiss_index(folder: str | os.PathLike) -> EmbeddingIndex:
    """Build the vector index of every batch of `folder` and write it with `items.json` (each file renamed into
    place once complete)."""
    folder = Path(folder)
    config = json.loads((folder / INDEX_CONFIG_FILE).read_text())
    batches = list(_read_batches(folder))
    items = [item for _, batch_items in batches for item in batch_items]
    embeddings = (
        np.concatenate([embeds for embeds, _ in batches])
        if batches
        else np.zeros((0, config.get("dimension") or 1), np.float32)
    )
    index = new_faiss_index(embeddings.shape[1], config["kind"], len(items))
    index.add(embeddings)
    _replace(folder / FAISS_FILE, lambda path: faiss.write_index(index, str(path)))
    _replace(folder / ITEMS_FILE, lambda path: path.write_text(json.dumps([asdict(item) for item in items])))
    return EmbeddingIndex(index, items, config)


class EmbeddingIndex:
    """A built index folder: the FAISS index, its items in row order and its config. Load with [`load`]."""

    def __init__(self, index: faiss.Index, items: list[IndexedItem], config: dict):
        self.index = index
        self.items = items
        self.config = config

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EmbeddingIndex:
        """Read an index folder written by [`build_index`].

        Raises:
            ValueError: naming the folder: not an index, or a run that did not finish (batches the vector index
                does not hold yet: run the same `medbind index` again to finish it).
        """
        folder = Path(folder)
        if not (folder / INDEX_CONFIG_FILE).is_file():
            raise ValueError(f"{folder} is not a MedBind index (no {INDEX_CONFIG_FILE}): build it with `medbind index`")
        config = json.loads((folder / INDEX_CONFIG_FILE).read_text())
        embedded = sum(_batch_sizes(folder))
        if not (folder / FAISS_FILE).is_file() or not (folder / ITEMS_FILE).is_file():
            raise ValueError(f"index {folder} is not finished ({embedded} items embedded, no vector index yet): "
                             "run the same `medbind index` again to finish it")  # fmt: skip
        index = faiss.read_index(str(folder / FAISS_FILE))
        items = [IndexedItem(**item) for item in json.loads((folder / ITEMS_FILE).read_text())]
        if not index.ntotal == len(items) == embedded:
            raise ValueError(
                f"index {folder} is not finished: {embedded} items embedded, {index.ntotal} in the vector index, "
                f"{len(items)} in {ITEMS_FILE}: run the same `medbind index` again to finish it"
            )
        return cls(index, items, config)

    def search(self, queries: np.ndarray, top_k: int = 5, modality: str | None = None) -> list[list[SearchHit]]:
        """Per query of `queries [q, d]` (L2-normalised, of any modality: the space is shared), the `top_k` most
        similar items, of `modality` only when given (cosine, most similar first; exact with a flat index)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise ValueError(f"queries must be [n, {self.index.d}] (the index's dimension), got {queries.shape}")
        parameters = None
        if modality is not None:
            ids = np.array([i for i, item in enumerate(self.items) if item.modality == modality], dtype=np.int64)
            selector = faiss.IDSelectorBatch(ids)
            is_hnsw = isinstance(self.index, faiss.IndexHNSW)
            parameters = (faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_SEARCH_DEPTH, top_k))
                          if is_hnsw else faiss.SearchParameters(sel=selector))  # fmt: skip
        scores, rows = self.index.search(queries, min(top_k, max(len(self.items), 1)), params=parameters)
        return [
            [
                SearchHit(rank, float(score), self.items[row].source, self.items[row].modality)
                for rank, (score, row) in enumerate(zip(query_scores, query_rows), start=1)
                if row >= 0  # faiss pads with -1 when fewer items match
            ]
            for query_scores, query_rows in zip(scores, rows)
        ]


def _checked_config(folder: Path, model: str, kind: str) -> dict:
    """The folder's config, written if new; a different model is an error (kind may change between runs)."""
    path = folder / INDEX_CONFIG_FILE
    config = json.loads(path.read_text()) if path.is_file() else {"model": model, "dimension": None}
    if config["model"] != model:
        raise ValueError(
            f"index {folder} holds embeddings of model {config['model']!r}, not {model!r}: embeddings of two models "
            "are not comparable; use another --out"
        )
    config["kind"] = kind
    _replace(path, lambda temporary: temporary.write_text(json.dumps(config, indent=2)))
    return config


def _check_embeddings(folder: Path, config: dict, embeds: np.ndarray, count: int) -> dict:
    """`embeds` must be `[count, d]` with the folder's `d` (recorded from the first batch)."""
    if embeds.ndim != 2 or embeds.shape[0] != count:
        raise ValueError(f"the embedding function returned shape {embeds.shape} for {count} inputs")
    if config["dimension"] is None:
        config = {**config, "dimension": int(embeds.shape[1])}
        _replace(folder / INDEX_CONFIG_FILE, lambda path: path.write_text(json.dumps(config, indent=2)))
    elif embeds.shape[1] != config["dimension"]:
        raise ValueError(f"index {folder} holds {config['dimension']}-d embeddings, got {embeds.shape[1]}-d ones")
    return config


def _write_batch(path: Path, embeds: np.ndarray, sources: Sequence[str], modality: str) -> None:
    metadata = {"sources": json.dumps(list(sources)), "modality": modality}
    _replace(path, lambda temporary: save_file({EMBEDDINGS: embeds}, str(temporary), metadata=metadata))


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` through a temporary file renamed over it: a reader, or a killed run, sees the old file or the
    new one, never part of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def _batch_files(folder: Path) -> list[Path]:
    return sorted((folder / BATCHES_DIR).glob("batch-*.safetensors"))


def _read_batches(folder: Path) -> Iterator[tuple[np.ndarray, list[IndexedItem]]]:
    """Each batch file's `(embeddings, items)`, in the order they were written."""
    for path in _batch_files(folder):
        with safe_open(path, framework="np") as file:
            embeds, metadata = file.get_tensor(EMBEDDINGS), file.metadata()
        yield embeds, [IndexedItem(source, metadata["modality"]) for source in json.loads(metadata["sources"])]


def _batch_sizes(folder: Path) -> Iterator[int]:
    for path in _batch_files(folder):
        with safe_open(path, framework="np") as file:
            yield len(json.loads(file.metadata()["sources"]))
