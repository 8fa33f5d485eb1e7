"""training/pretrain.py end to end on a small synthetic demo: export, variants, two processes, kill and resume."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor, BertConfig, BertModel

from datasets import load_from_disk

from medbind_processing.demo import save_demo
from medbind_training.pretraining import main
from medbind_training.pretraining import parse_pretraining_arguments as parse_arguments
from medbind_training.tokenizer import train_wordpiece_tokenizer
from medbind_training.trainer import STAGING_DIR, MedBindTrainer
from modeling_medbind import load_text_tokenizer

PRETRAIN = Path(__file__).resolve().parents[1] / "training" / "pretrain.py"
RETRIEVALS = (("cxr", "cxr_to_text"), ("ecg", "ecg_to_text"), ("pairs", "cxr_to_ecg"), ("pairs", "ecg_to_cxr"))
# No dropout and no augmentation: runs that must agree step for step draw no random numbers in the model. The CXR
# tower is a small Swin, as in the paper: the tiny preset's ResNet normalises with per-process batch statistics.
DETERMINISTIC = [
    "--augment", "false",
    "--config_overrides", json.dumps({
        "cxr_config": {"model_name": "swin_tiny_patch4_window7_224",
                       "model_kwargs": {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2]}},
        "ecg_config": {"hidden_dropout_prob": 0.0, "attention_dropout": 0.0},
        "text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    }),
]  # fmt: skip


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "data"
    save_demo(root, num_patients=150, seed=0)  # the smallest demo whose validation split has a visit pair
    return root


@pytest.fixture(scope="module")
def demo_tokenizer(demo_data) -> Path:
    """One tokenizer, trained once, for the runs of a test that compare their results."""
    path = demo_data.parent / "tokenizer"
    reports = [text for name in ("cxr", "ecg") for text in load_from_disk(str(demo_data / name))["train"]["text"]]
    train_wordpiece_tokenizer(reports, vocab_size=2048).save_pretrained(path)
    return path


def demo_arguments(data: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--preset", "demo", "--dataset_dir", str(data), "--output_dir", str(output),
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32", "--logging_steps", "1",
        *extra,
    ]  # fmt: skip


def training_logs(output: Path) -> list[dict]:
    """The per-step training logs of the run's newest checkpoint (or of the final state when none was kept)."""
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state_file = checkpoints[-1] / "trainer_state.json" if checkpoints else output / "trainer_state.json"
    state = json.loads(state_file.read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


def run_script(*arguments: str, **popen_kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(PRETRAIN), *arguments], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, **popen_kwargs,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-5000:]
    return output


@pytest.mark.slow
def test_demo_preset_trains_evaluates_and_writes_a_hub_folder(demo_data, tmp_path):
    output = tmp_path / "bd"
    metrics = main(demo_arguments(demo_data, output, "--max_steps", "8", "--eval_strategy", "steps", "--eval_steps", "4",
                                  "--save_strategy", "steps", "--save_steps", "4"))  # fmt: skip

    # results.json: the test split, every task (validation only chose the checkpoint)
    results = json.loads((output / "results.json").read_text())
    assert results == metrics and results["split"] == "test"
    assert {f"retrieval/{dataset}/{d}/recall@{k}" for dataset, d in RETRIEVALS for k in (1, 5, 10)} <= set(results)
    # (cross-modality needs HYP and Cardiomegaly among the few test pairs of 150 patients: tests/test_evaluation.py)
    assert {"zero_shot/ecg/balanced_accuracy", "few_shot/ecg/k1/balanced_accuracy"} <= set(results)
    numbers = {key: value for key, value in results.items() if "/" in key and not key.startswith("protocol/")}
    assert all(0.0 <= value <= 100.0 for key, value in numbers.items() if "rsum" not in key)
    assert all((output / figure).stat().st_size > 1000 for figure in ("retrieval.png", "few_shot.png", "tsne.png"))
    card = (output / "README.md").read_text()
    assert "SYNTHETIC" in card and "| CXR -> ECG |" in card and "| CXR preprocessing | timm |" in card
    assert {"model.safetensors", "config.json", "modeling_medbind.py", "processor_config.json", "tokenizer.json"} <= {
        path.name for path in output.iterdir()
    }
    assert not list(output.glob("*.pt")) and not (output / "pytorch_model.bin").exists()
    logs = training_logs(output)
    assert all("tmcl_loss" in entry and "emcl_loss" in entry for entry in logs)
    assert any(entry["emcl_loss"] > 0 for entry in logs)  # the demo has visit pairs, so EMCL is at work

    model = AutoModel.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    inputs = processor(text=["Sinus rhythm."], ecgs=[torch.zeros(12, 1000).numpy()], sampling_rate=100, return_tensors="pt")
    with torch.no_grad():
        assert model.get_ecg_features(inputs["ecg_values"]).pooler_output.shape == (1, 256)


@pytest.mark.slow
def test_the_trained_tokenizer_is_kept_for_every_process_and_for_a_resume(demo_data, tmp_path):
    output = tmp_path / "tokenizer-run"
    arguments = demo_arguments(demo_data, output, "--max_steps", "1", "--eval_strategy", "no",
                               "--load_best_model_at_end", "false")  # fmt: skip
    main(arguments)
    saved = output / "_trained-tokenizer"
    written = (saved / "tokenizer.json").stat().st_mtime_ns
    main(arguments)  # a second run in the same folder (a resume, another process) loads it, never retrains it
    assert (saved / "tokenizer.json").stat().st_mtime_ns == written
    exported = AutoProcessor.from_pretrained(output).tokenizer
    assert exported.get_vocab() == load_text_tokenizer(saved).get_vocab()


@pytest.mark.slow
def test_runs_without_pairs_have_zero_emcl(demo_data, tmp_path):
    output = tmp_path / "unpaired"
    main(demo_arguments(demo_data, output, "--max_steps", "3", "--pair_fraction", "0", "--eval_strategy", "no",
                        "--load_best_model_at_end", "false", "--save_steps", "3", "--save_strategy", "steps"))  # fmt: skip
    logs = training_logs(output)
    assert len(logs) == 3 and all(entry["emcl_loss"] == 0.0 for entry in logs)


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "kept", "absent"), [("ecg-clip", "ecg", "cxr"), ("cxr-clip", "cxr", "ecg")])
def test_one_modality_variants_train_on_that_modality_and_reports_alone(demo_data, tmp_path, variant, kept, absent):
    output = tmp_path / variant
    metrics = main(demo_arguments(demo_data, output, "--variant", variant, "--max_steps", "3",
                                  "--eval_strategy", "no", "--load_best_model_at_end", "false"))  # fmt: skip
    directions = {key.split("/")[2] for key in metrics if key.startswith("retrieval/") and "rsum" not in key}
    assert directions == {f"{kept}_to_text"}
    assert not any(key.startswith("cross_modality/") for key in metrics)
    weights = load_file(output / "model.safetensors")
    assert weights and not any(name.startswith(absent) for name in weights)
    assert json.loads((output / "config.json").read_text())["variant"] == variant


@pytest.mark.slow
def test_a_text_backbone_brings_its_tokenizer_and_a_saved_model_keeps_its_processor(
    demo_data, demo_tokenizer, tmp_path
):
    tokenizer = load_text_tokenizer(demo_tokenizer)
    bert = tmp_path / "bert"
    torch.manual_seed(3)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(bert)  # fmt: skip
    tokenizer.save_pretrained(bert)
    short = ("--max_steps", "1", "--eval_strategy", "no", "--load_best_model_at_end", "false")
    first, second = tmp_path / "from-bert", tmp_path / "from-saved"
    main(demo_arguments(demo_data, first, "--text_backbone", str(bert), *short))
    config = json.loads((first / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 32
    processor = AutoProcessor.from_pretrained(first)
    assert processor.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert processor.image_processor.crop_size["height"] == config["cxr_config"]["image_size"]
    main(demo_arguments(demo_data, second, "--model_name_or_path", str(first), *short))
    assert json.loads((second / "config.json").read_text())["text_config"] == config["text_config"]
    assert AutoProcessor.from_pretrained(second).to_dict() == processor.to_dict()


def test_arguments_load_from_a_yaml_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("config_preset: tiny\nvariant: nm\ndataset_dir: /data/mimic\noutput_dir: out\nnum_train_epochs: 3\n")
    model_args, data_args, training_args = parse_arguments([str(config)])
    assert (model_args.config_preset, model_args.variant, data_args.dataset_dir) == ("tiny", "nm", "/data/mimic")
    assert training_args.num_train_epochs == 3
    # paper defaults where the file is silent
    paper_defaults = (4e-4, 0.1, 128, "cosine")
    assert (training_args.learning_rate, training_args.weight_decay, training_args.per_device_train_batch_size,
            training_args.lr_scheduler_type) == paper_defaults  # fmt: skip


def test_each_demo_variant_writes_its_own_folder_unless_told_otherwise():
    folders = [parse_arguments(["--preset", "demo", *variant])[2].output_dir for variant in (
        [], ["--variant", "nm"], ["--variant=ecg-clip"])]  # fmt: skip
    assert folders == ["outputs/medbind-demo-bd", "outputs/medbind-demo-nm", "outputs/medbind-demo-ecg-clip"]
    assert parse_arguments(["--preset=demo", "--variant", "nm", "--output_dir", "mine"])[2].output_dir == "mine"


@pytest.mark.slow
def test_a_failed_save_leaves_no_checkpoint_behind(demo_data, tmp_path, monkeypatch):
    def crash(self, output_dir):
        raise OSError("disk full")

    monkeypatch.setattr(MedBindTrainer, "_save_rng_state", crash)
    output = tmp_path / "crash"
    with pytest.raises(OSError, match="disk full"):
        main(demo_arguments(demo_data, output, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
                            "--eval_strategy", "no", "--load_best_model_at_end", "false"))  # fmt: skip
    assert not list(output.glob("checkpoint-*"))  # only the staging folder, which resume ignores
    assert (output / STAGING_DIR / "checkpoint-2").is_dir()


@pytest.mark.slow
def test_two_processes_take_the_single_process_steps(demo_data, demo_tokenizer, tmp_path, accelerate_launch):
    common = ["--tokenizer_name", str(demo_tokenizer), "--max_steps", "3", "--optim", "sgd", "--learning_rate", "0.1", "--eval_strategy", "no",
              "--load_best_model_at_end", "false", "--save_strategy", "steps", "--save_steps", "3", *DETERMINISTIC]  # fmt: skip
    accelerate_launch(PRETRAIN, *demo_arguments(demo_data, tmp_path / "two", "--per_device_train_batch_size", "4"),
                      *common)  # fmt: skip
    finish(run_script(*demo_arguments(demo_data, tmp_path / "one"), *common))

    one, two = training_logs(tmp_path / "one"), training_logs(tmp_path / "two")
    assert [entry["step"] for entry in one] == [entry["step"] for entry in two] == [1, 2, 3]
    for single, double in zip(one, two):
        for name in ("loss", "tmcl_loss", "emcl_loss"):
            assert double[name] == pytest.approx(single[name], rel=1e-3, abs=1e-3), name
    single_weights, double_weights = load_file(tmp_path / "one/model.safetensors"), load_file(tmp_path / "two/model.safetensors")
    assert single_weights.keys() == double_weights.keys()
    for name, value in single_weights.items():
        torch.testing.assert_close(double_weights[name], value, rtol=1e-4, atol=1e-5)
    assert one[0]["loss"] != one[-1]["loss"]  # the steps did move the weights


# Runs pretrain.py with a callback that SIGKILLs the run at the end of step KILL_AT_STEP, as an out-of-memory kill
# or a pre-empted node would: the kill lands at the same point of the run on every machine. The process leads its
# own group (start_new_session), and the whole group goes, data loader workers included, which would otherwise
# outlive it holding the output pipes.
KILLED_AT_A_STEP = """
import os, signal, sys
from transformers import TrainerCallback
import medbind_training.pretraining as pretrain

class KillAtStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["KILL_AT_STEP"]):
            assert os.getpgrp() == os.getpid(), "start the run with start_new_session=True"
            os.killpg(os.getpgrp(), signal.SIGKILL)

class KilledTrainer(pretrain.MedBindTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(KillAtStep())

pretrain.MedBindTrainer = KilledTrainer
pretrain.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_one(
    demo_data, demo_tokenizer, tmp_path
):
    save_steps, kill_at, max_steps = 4, 6, 12
    common = ["--tokenizer_name", str(demo_tokenizer), "--max_steps", str(max_steps), "--save_strategy", "steps",
              "--save_steps", str(save_steps), "--eval_strategy", "no", "--load_best_model_at_end", "false"]  # fmt: skip
    reference = run_script(*demo_arguments(demo_data, tmp_path / "reference"), *common)

    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "KILL_AT_STEP": str(kill_at)}
    victim = subprocess.run(
        [sys.executable, "-c", KILLED_AT_A_STEP, *demo_arguments(demo_data, interrupted), *common],
        env=env, capture_output=True, text=True, timeout=600, start_new_session=True,
    )  # fmt: skip
    assert victim.returncode == -signal.SIGKILL, victim.stderr[-4000:]
    # Killed two steps after checkpoint-4: the resume loses less than one save interval.
    assert sorted(path.name for path in interrupted.glob("checkpoint-*")) == ["checkpoint-4"]

    resumed = run_script(*demo_arguments(demo_data, interrupted), *common, "--resume_from_checkpoint", "auto")
    assert "checkpoint-4" in finish(resumed, timeout=600)
    finish(reference, timeout=600)

    expected, got = training_logs(tmp_path / "reference"), training_logs(interrupted)
    assert [entry["step"] for entry in got] == list(range(1, max_steps + 1))
    for before, after in zip(expected, got):
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-5), f"step {before['step']}: a different batch"
    final_expected = load_file(tmp_path / "reference/model.safetensors")
    final_got = load_file(interrupted / "model.safetensors")
    for name, value in final_expected.items():
        torch.testing.assert_close(final_got[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_streamed_training_data_trains_and_exports(demo_data, tmp_path):
    output = tmp_path / "streamed"
    metrics = main(demo_arguments(demo_data, output, "--streaming", "true", "--max_steps", "2", "--eval_strategy", "no",
                                  "--load_best_model_at_end", "false", "--streaming_num_shards", "4"))  # fmt: skip
    assert [entry["step"] for entry in training_logs(output)] == [1, 2]
    assert "retrieval/cxr/cxr_to_text/recall@1" in metrics and (output / "model.safetensors").exists()
    with pytest.raises(ValueError, match="max_steps"):
        main(demo_arguments(demo_data, tmp_path / "no-steps", "--streaming", "true"))


def test_a_copied_preset_file_is_read_and_the_command_line_overrides_it(tmp_path):
    from medbind_training.arguments import PRESETS

    edited = tmp_path / "my_demo.yaml"
    demo = (PRESETS / "pretrain" / "demo.yaml").read_text()
    text, edits = re.subn(r"^learning_rate: .*$", "learning_rate: 0.5", demo, flags=re.MULTILINE)
    assert edits == 1
    edited.write_text(text)
    model_args, data_args, training_args = parse_arguments(["--preset", str(edited), "--num_train_epochs", "2"])
    assert (training_args.learning_rate, training_args.num_train_epochs) == (0.5, 2.0)
    expected = ("tiny", True, "outputs/medbind-demo-bd")
    assert (model_args.config_preset, data_args.synthetic_demo, training_args.output_dir) == expected


def test_a_preset_naming_an_unknown_argument_or_an_unknown_preset_is_refused(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("learning_rte: 0.1\n")
    with pytest.raises(ValueError, match=rf"{typo}.*learning_rte"):
        parse_arguments([str(typo)])
    with pytest.raises(FileNotFoundError, match="demo, paper"):
        parse_arguments(["--preset", "huge"])
