"""Search speed and recall of the archive's vector index (medbind/index.py) on random embeddings.

`--items` (100,000) L2-normalised `--dimension` (256, MedBind's projection) vectors and `--queries` (1,000) unit
queries, from `--data`:

- `random`: uniform on the sphere, queries too: no structure at all, the worst case for any approximate index (every
  item is nearly as far from a query as its true nearest neighbours, cosines about 0.2 against 0).
- `clustered`: items around 1,000 random centres (noise of the same norm as the centre), queries are items with
  more such noise: closer to real embeddings, which gather by finding and patient.

Rows: the exact index (`IndexFlatIP`, the default below a million items) and HNSW (`IndexHNSWFlat`,
M = `HNSW_NEIGHBOURS`) at several search depths (efSearch; the library's default is `HNSW_SEARCH_DEPTH`), each
with its build time, queries per second (all queries in one call, `--threads` threads) and recall@10: the share of
the exact top 10 it returns.

Run: `python benchmarks/bench_index.py [--data random|clustered] [--items 100000] [--dimension 256]
[--queries 1000] [--threads 1] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from medbind.index import HNSW_SEARCH_DEPTH, new_faiss_index

TOP_K = 10
SEARCH_DEPTHS = (16, 32, 64, 128, 256)


@dataclass
class Row:
    index: str
    build_s: float
    queries_per_s: float
    recall_at_10: float


def unit_vectors(count: int, dimension: int, rng: np.random.Generator) -> np.ndarray:
    return unit_vectors_from(rng.standard_normal((count, dimension), dtype=np.float32))


def clustered_vectors(count: int, centres: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around random `centres`: each a centre plus isotropic noise of norm about `noise`."""
    picked = centres[rng.integers(0, len(centres), count)]
    return unit_vectors_from(picked + noise * unit_vectors(count, centres.shape[1], rng))


def unit_vectors_from(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """The mean share of each query's exact top k that `found` holds (both `[queries, k]` ids)."""
    return float(np.mean([len(set(row) & set(truth)) / exact.shape[1] for row, truth in zip(found, exact)]))


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("random", "clustered"), default="random", help="see the docstring")
    parser.add_argument("--items", type=int, default=100_000, help="vectors in the index")
    parser.add_argument("--dimension", type=int, default=256, help="their size (MedBind's projection_dim)")
    parser.add_argument("--queries", type=int, default=1_000, help="query vectors")
    parser.add_argument("--threads", type=int, default=1, help="faiss (OpenMP) threads")
    parser.add_argument("--json", type=Path, help="also write the rows and settings to this JSON file")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.data == "random":
        items, queries = unit_vectors(args.items, args.dimension, rng), unit_vectors(args.queries, args.dimension, rng)
    else:
        items = clustered_vectors(args.items, unit_vectors(1_000, args.dimension, rng), 1.0, rng)
        queries = clustered_vectors(args.queries, items[: args.queries], 0.5, rng)

    rows, exact = [], None
    for kind in ("flat", "hnsw"):
        start = time.perf_counter()
        index = new_faiss_index(args.dimension, kind, args.items)
        index.add(items)
        build_s = time.perf_counter() - start
        for depth in (None,) if kind == "flat" else SEARCH_DEPTHS:
            if depth is not None:
                index.hnsw.efSearch = depth
            start = time.perf_counter()
            _, ids = index.search(queries, TOP_K)
            speed = len(queries) / (time.perf_counter() - start)
            exact = ids if exact is None else exact
            name = "flat (exact)" if depth is None else f"hnsw efSearch={depth}" + (" (default)" if depth == HNSW_SEARCH_DEPTH else "")
            rows.append(Row(name, build_s, speed, recall_at_k(ids, exact)))

    print(f"{args.items:,} x {args.dimension}-d {args.data} unit vectors, {args.queries:,} queries, top {TOP_K}, "
          f"{args.threads} thread(s)\n")  # fmt: skip
    print("| index | build (s) | queries/s | recall@10 |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row.index} | {row.build_s:.1f} | {row.queries_per_s:,.0f} | {row.recall_at_10:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {key: value for key, value in vars(args).items() if key != "json"}
        args.json.write_text(json.dumps({"settings": settings, "rows": [asdict(row) for row in rows]}, indent=2))
    return rows


if __name__ == "__main__":
    main()
