"""The demo is reproducible: the same command with the same seed gives the same results.json and weights.

Each run is its own process, as two users' runs are: a source of randomness that differs between processes (hash
seeds; the WordPiece trainer's hash-map order once made two runs' vocabularies differ) shows only there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

PRETRAIN = Path(__file__).resolve().parents[1] / "training" / "pretrain.py"
# A short demo: its own data build (150 patients: the smallest whose validation split has a visit pair), a few
# steps, an evaluation and a checkpoint in the middle, the best checkpoint reloaded at the end.
SHORT_DEMO = [
    "--preset", "demo", "--demo_num_patients", "150", "--seed", "0", "--max_steps", "6",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32",
    "--eval_steps", "3", "--save_steps", "3",
]  # fmt: skip


def start_demo(root: Path) -> subprocess.Popen:
    # One thread each: the two runs share the machine, and a run's arithmetic must not depend on the other's load.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "random"}
    arguments = [*SHORT_DEMO, "--dataset_dir", str(root / "data"), "--output_dir", str(root / "model")]
    return subprocess.Popen(
        [sys.executable, str(PRETRAIN), *arguments],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 300) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-5000:]


@pytest.mark.slow
def test_the_same_demo_command_twice_gives_the_same_results_and_weights(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    runs = [start_demo(first), start_demo(second)]
    for run in runs:
        finish(run)

    first_model, second_model = first / "model", second / "model"
    first_results = json.loads((first_model / "results.json").read_text())
    second_results = json.loads((second_model / "results.json").read_text())
    # `model` names the folder the results were written to, which differs here only because the runs sit side by side.
    assert first_results.pop("model", str(first_model)) == str(first_model)
    assert second_results.pop("model", str(second_model)) == str(second_model)
    assert first_results == second_results
    assert (first_model / "tokenizer.json").read_text() == (second_model / "tokenizer.json").read_text()
    first_weights = load_file(first_model / "model.safetensors")
    second_weights = load_file(second_model / "model.safetensors")
    assert first_weights.keys() == second_weights.keys()
    for name, value in first_weights.items():
        assert torch.equal(second_weights[name], value), name
