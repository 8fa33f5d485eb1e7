"""The searchable archive (medbind/index.py, `medbind index` / `medbind search`): resumable batched indexing that a
killed run cannot corrupt, and search by example across modalities."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medbind.cli import EXIT_BAD_INPUT, EXIT_OK, main
from medbind.index import BATCHES_DIR, EmbeddingIndex, build_index, item_source
from modeling_medbind import CANONICAL_LEAD_NAMES as LEADS

NUM_FILES = 1000  # half radiographs, half ECG records
BATCH_SIZE = 50
KILLED_AFTER_BATCHES = 7


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """NUM_FILES small files: random 32x32 radiographs and 2 s 12-lead 100 Hz WFDB records."""
    folder = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    radiographs, records = [], []
    for number in range(NUM_FILES // 2):
        path = folder / f"cxr_{number:04d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
        radiographs.append(str(path))
        records.append(write_record(folder / f"ecg_{number:04d}", rng.integers(-2000, 2000, (200, 12), np.int16)))
    return {"cxr": radiographs, "ecg": records}


def write_record(path, samples):
    """A WFDB record of 16-bit `samples [n, 12]` at 100 Hz, 1000 units/mV, written directly (wfdb.wrsamp takes
    0.1 s a record)."""
    lines = [f"{path.name} 12 100 {len(samples)}"]
    lines += [f"{path.name}.dat 16 1000/mV 16 0 {first} 0 0 {lead}" for first, lead in zip(samples[0], LEADS)]
    path.with_suffix(".hea").write_text("\n".join(lines) + "\n")
    path.with_suffix(".dat").write_bytes(samples.astype("<i2").tobytes())
    return str(path)


# In a fresh process: `medbind index`, killed with SIGKILL (no cleanup runs) while writing batch
# KILLED_AFTER_BATCHES + 1, after its temporary file is written and before it is renamed into place.
KILLED_RUN = """
import os, signal, sys
import medbind.index as index
from medbind.cli import main
written, write_batch = [], index._write_batch
def write_then_die(path, embeds, sources, modality):
    if len(written) == {batches}:
        index.save_file({{index.EMBEDDINGS: embeds}}, str(path.with_name(f".{{path.name}}.tmp")))
        os.kill(os.getpid(), signal.SIGKILL)
    written.append(path)
    write_batch(path, embeds, sources, modality)
index._write_batch = write_then_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_run_resumes_into_one_complete_index_without_duplicates(model_dir, archive, tmp_path, capsys):
    out = tmp_path / "index"
    command = ["index", "--model", model_dir, "--cxr", *archive["cxr"], "--ecg", *archive["ecg"], "--out", out,
               "--batch-size", BATCH_SIZE]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN.format(batches=KILLED_AFTER_BATCHES), *map(str, command)],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    batches = sorted(path.name for path in (out / BATCHES_DIR).iterdir())
    assert len([name for name in batches if not name.startswith(".")]) == KILLED_AFTER_BATCHES
    with pytest.raises(ValueError, match=rf"index {out} is not finished \({KILLED_AFTER_BATCHES * BATCH_SIZE} items"):
        EmbeddingIndex.load(out)

    assert main([str(arg) for arg in command]) == EXIT_OK  # the same command, run again
    assert f"index {out} holds {NUM_FILES} items" in capsys.readouterr().out
    index = EmbeddingIndex.load(out)
    sources = [(item.modality, item.source) for item in index.items]
    expected = [(modality, item_source(modality, path)) for modality in ("cxr", "ecg") for path in archive[modality]]
    assert len(set(sources)) == len(sources) == NUM_FILES and set(sources) == set(expected)
    assert index.index.ntotal == NUM_FILES and json.loads((out / "index_config.json").read_text())["kind"] == "auto"

    # A third run finds everything indexed: no batch is added.
    assert main([str(arg) for arg in command]) == EXIT_OK
    assert len(list((out / BATCHES_DIR).glob("batch-*"))) == NUM_FILES // BATCH_SIZE
    capsys.readouterr()

    # An exact duplicate of an indexed file, of either modality, finds that file first, at cosine 1.
    for modality, position in [("cxr", 123), ("ecg", 456)]:
        query = archive[modality][position]
        assert main(["search", "--model", str(model_dir), "--index", str(out), f"--{modality}", query]) == EXIT_OK
        first = capsys.readouterr().out.strip().splitlines()[2].split()
        assert first == ["1", "1.000", modality, item_source(modality, query)]


def test_search_ranks_every_index_entry_across_modalities_and_filters_by_modality(model_dir, archive, tmp_path, capsys):
    out = tmp_path / "index"
    texts = ["No evidence of pneumonia.", "Sinus rhythm. Acute inferior myocardial infarction."]
    assert main(["index", "--model", str(model_dir), "--cxr", *archive["cxr"][:5], "--ecg", *archive["ecg"][:5],
                 "--text", *texts, "--out", str(out)]) == EXIT_OK  # fmt: skip
    capsys.readouterr()
    status = main(["search", "--model", str(model_dir), "--index", str(out), "--text", texts[0], "--top-k", "50"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == EXIT_OK and lines[0] == f"query (text): {texts[0]}"
    ranked = [line.split(None, 3) for line in lines[2:]]
    assert len(ranked) == 12 and ranked[0][1:] == ["1.000", "text", texts[0]]
    assert {row[2] for row in ranked} == {"cxr", "ecg", "text"}
    assert [float(row[1]) for row in ranked] == sorted((float(row[1]) for row in ranked), reverse=True)

    # A radiograph query answered with ECGs only: "the ECGs whose embedding is closest to this radiograph's".
    status = main(["search", "--model", str(model_dir), "--index", str(out), "--cxr", archive["cxr"][0],
                   "--modality", "ecg", "--top-k", "3"])  # fmt: skip
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert status == EXIT_OK and len(rows) == 3 and {row[2] for row in rows} == {"ecg"}


def test_an_unfinished_or_missing_index_and_another_model_are_named(model_dir, archive, tmp_path, capsys):
    status = main(["search", "--model", str(model_dir), "--index", str(tmp_path), "--text", "x"])
    assert status == EXIT_BAD_INPUT and f"{tmp_path} is not a MedBind index" in capsys.readouterr().err
    out = tmp_path / "index"
    build_index(out, {"text": ["a", "b"]}, lambda modality, items: np.eye(2, 4, dtype=np.float32)[: len(items)],
                model="first-model", progress=False)  # fmt: skip
    status = main(["index", "--model", str(model_dir), "--text", "c", "--out", str(out)])
    assert status == EXIT_BAD_INPUT and "holds embeddings of model 'first-model'" in capsys.readouterr().err


def fake_embed(modality, items):
    """A deterministic unit vector per (modality, item)."""
    rows = [np.random.default_rng(abs(hash((modality, item))) % 2**32).standard_normal(16) for item in items]
    return np.stack([row / np.linalg.norm(row) for row in rows]).astype(np.float32)


def test_an_input_given_twice_is_indexed_once_and_hnsw_finds_exact_duplicates(tmp_path):
    calls = []

    def embed(modality, items):  # fake_embed, counting what it is asked for
        calls.append(list(items))
        return fake_embed(modality, items)

    texts = [f"report {number}" for number in range(300)]
    index = build_index(tmp_path, {"text": texts + texts[:10]}, embed, model="m", batch_size=64, kind="hnsw",
                        progress=False)  # fmt: skip
    assert len(index) == 300 and sum(map(len, calls)) == 300
    hits = index.search(fake_embed("text", texts[:100]), top_k=1)
    assert [query_hits[0].source for query_hits in hits] == texts[:100]
    assert EmbeddingIndex.load(tmp_path).search(fake_embed("text", ["report 7"]), 3, modality="cxr") == [[]]
