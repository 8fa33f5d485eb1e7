"""pretrain.py at scale: loader workers that never hang, the global contrastive batch said at start, chunked steps."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from medbind_processing.demo import save_demo
from medbind_training.data import MedBindPretrainingCollator, PretrainingDataset
from medbind_training.gradient_cache import gradient_cached_step
from medbind_training.pretraining import describe_contrastive_batch
from medbind_training.pretraining import parse_pretraining_arguments as parse_arguments
from medbind_training.pretraining_arguments import PretrainingArguments, default_dataloader_workers
from medbind_training.trainer import MedBindTrainer
from samples import cxr_dataset, ecg_dataset

from modeling_medbind import MedBindConfig, MedBindModel

PRETRAIN = Path(__file__).resolve().parents[1] / "training" / "pretrain.py"
SWIN = {
    "model_name": "swin_tiny_patch4_window7_224",
    "image_size": 224,  # the size `medbind_processor` (conftest) resizes to
    "model_kwargs": {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2]},
}


@pytest.mark.slow
def test_loader_workers_finish_with_tokenizers_parallelism_true(tmp_path):
    # The fast tokenizer's thread pool deadlocks in forked workers when the variable is "true".
    data = tmp_path / "data"
    save_demo(data, num_patients=150, seed=0)
    arguments = [
        "--preset", "demo", "--dataset_dir", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "3",
        "--per_device_train_batch_size", "8", "--dataloader_num_workers", "2", "--eval_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--logging_steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(PRETRAIN), *arguments], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3]
    assert "contrastive batch: 8 CXR-report and ECG-report samples per step" in result.stderr


def test_the_start_up_line_states_the_global_contrastive_batch():
    def arguments(per_device, processes, accumulation=1, chunk=None):
        return SimpleNamespace(per_device_train_batch_size=per_device, world_size=processes,
                               gradient_accumulation_steps=accumulation, contrastive_chunk_size=chunk)  # fmt: skip

    # The shipped 8-GPU config with the paper's 128 per device is not the paper's batch: say so at start.
    assert describe_contrastive_batch(arguments(128, 8)).startswith("contrastive batch: 1024 CXR-report")
    assert "16 per process x 8 processes" in describe_contrastive_batch(arguments(16, 8))
    assert "negatives stay within each batch" in describe_contrastive_batch(arguments(64, 1, accumulation=2))
    assert "32 samples per modality at a time" in describe_contrastive_batch(arguments(128, 1, chunk=32))


def test_loader_workers_default_to_this_process_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_dataloader_workers() == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_dataloader_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_dataloader_workers() == 0


def test_chunk_size_is_a_pretrain_argument():
    _, _, training_args = parse_arguments(["--contrastive_chunk_size", "32"])
    assert training_args.contrastive_chunk_size == 32 and training_args.logging_nan_inf_filter is False


def train_one_step(medbind_processor, output: Path, contrastive_chunk_size: int | None = None) -> tuple[dict, dict]:
    """One optimizer step over two accumulated micro-batches of 5 slots; returns its log entry and the weights."""
    torch.manual_seed(0)
    config = MedBindConfig.from_preset(
        "tiny", cxr_config=SWIN,
        ecg_config={"hidden_dropout_prob": 0.0, "attention_dropout": 0.0, "patch_size": 50},
        text_config={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    )  # fmt: skip
    config.text_config.vocab_size = len(medbind_processor.tokenizer)
    args = PretrainingArguments(
        output_dir=str(output), max_steps=1, per_device_train_batch_size=5, gradient_accumulation_steps=2,
        optim="sgd", learning_rate=0.1, use_cpu=True, report_to="none", save_strategy="no", eval_strategy="no",
        load_best_model_at_end=False, logging_steps=1, dataloader_num_workers=0,
    )  # fmt: skip
    pairs = [(0, 3), (2, 1), (4, 4), (6, 0), (7, 7)]
    trainer = MedBindTrainer(
        model=MedBindModel(config), args=args, train_dataset=PretrainingDataset(cxr_dataset(8), ecg_dataset(9), pairs),
        data_collator=MedBindPretrainingCollator(medbind_processor), contrastive_chunk_size=contrastive_chunk_size,
    )  # fmt: skip
    trainer.train()
    (log,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    return log, {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def test_trainer_steps_in_chunks_equal_whole_batch_steps_with_gradient_accumulation(medbind_processor, tmp_path,
                                                                                    monkeypatch):
    import medbind_training.trainer as trainer_module

    chunked_steps = []

    def spy(*args, **kwargs):
        chunked_steps.append(kwargs["loss_scale"])
        return gradient_cached_step(*args, **kwargs)

    whole_log, whole_weights = train_one_step(medbind_processor, tmp_path / "whole")
    monkeypatch.setattr(trainer_module, "gradient_cached_step", spy)
    chunked_log, chunked_weights = train_one_step(medbind_processor, tmp_path / "chunked", contrastive_chunk_size=2)
    assert chunked_steps == [0.5, 0.5]  # both micro-batches went through gradient caching, each scaled by 1/2
    for name in ("loss", "tmcl_loss", "emcl_loss"):
        assert chunked_log[name] == pytest.approx(whole_log[name], rel=1e-4), name
    assert whole_log["emcl_loss"] > 0
    for name, value in whole_weights.items():
        torch.testing.assert_close(chunked_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
