"""MedBindTrainer's own pieces on a tiny model: atomic checkpoints, the token-free arguments file, the sampler, and
the two private transformers hooks it relies on."""

import inspect

import pytest
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME

from medbind_training.data import MedBindPretrainingCollator, PretrainingDataset, SlotSampler
from medbind_training.trainer import STAGING_DIR, MedBindTrainer
from modeling_medbind import MedBindConfig, MedBindModel
from samples import cxr_dataset, ecg_dataset


def test_the_private_transformers_hooks_medbind_overrides_still_exist_and_are_used_so():
    # MedBindTrainer overrides these two private methods (see the last section of its class): if transformers
    # renames them or stops reading them there, the sampler or the atomic checkpoints silently stop working.
    assert list(inspect.signature(Trainer._get_train_sampler).parameters) == ["self", "train_dataset"]
    assert "sampler_fn=self._get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader)
    assert list(inspect.signature(Trainer._get_output_dir).parameters) == ["self", "trial"]
    save_checkpoint = inspect.getsource(Trainer._save_checkpoint)
    assert "run_dir = self._get_output_dir(trial=trial)" in save_checkpoint
    assert "output_dir = os.path.join(run_dir, checkpoint_folder)" in save_checkpoint
    # ... and these public ones, whose private-looking argument it passes on.
    assert list(inspect.signature(Trainer.save_model).parameters) == ["self", "output_dir", "_internal_call"]
    assert list(inspect.signature(Trainer.training_step).parameters) == ["self", "model", "inputs", "num_items_in_batch"]


def tiny_trainer(medbind_processor, output, **arguments) -> MedBindTrainer:
    torch.manual_seed(0)
    config = MedBindConfig.from_preset("tiny", ecg_config={"patch_size": 50})
    config.text_config.vocab_size = len(medbind_processor.tokenizer)
    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=4, use_cpu=True, report_to="none", eval_strategy="no",
        remove_unused_columns=False, logging_steps=1, dataloader_num_workers=0, **arguments,
    )  # fmt: skip
    return MedBindTrainer(
        model=MedBindModel(config), args=args, data_collator=MedBindPretrainingCollator(medbind_processor),
        train_dataset=PretrainingDataset(cxr_dataset(4), ecg_dataset(4), [(0, 1), (2, 3)]),
    )  # fmt: skip


def test_checkpoints_are_published_whole_without_the_hub_token_and_rotated(medbind_processor, tmp_path):
    output = tmp_path / "run"
    (output / STAGING_DIR / "checkpoint-9").mkdir(parents=True)  # what an interrupted save of an earlier run left
    trainer = tiny_trainer(medbind_processor, output, max_steps=3, save_strategy="steps", save_steps=1,
                           save_total_limit=2, hub_token="hf_secret")  # fmt: skip
    sampler = trainer.get_train_dataloader().batch_sampler.sampler
    assert isinstance(sampler, SlotSampler) and sampler.seed == trainer.args.seed
    trainer.train()

    assert sorted(path.name for path in output.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    for checkpoint in ("checkpoint-2", "checkpoint-3"):
        saved_files = {path.name for path in (output / checkpoint).iterdir()}
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= saved_files
        saved = torch.load(output / checkpoint / TRAINING_ARGS_NAME, weights_only=False)
        assert saved.hub_token is None and saved.output_dir == str(output)
    assert trainer.args.hub_token == "hf_secret"  # only the file goes without it
    trainer.save_model()
    assert torch.load(output / TRAINING_ARGS_NAME, weights_only=False).hub_token is None


def test_chunk_size_is_a_constructor_argument(medbind_processor, tmp_path):
    assert tiny_trainer(medbind_processor, tmp_path, max_steps=1).contrastive_chunk_size is None
    with pytest.raises(ValueError, match="contrastive_chunk_size must be at least 1, got 0"):
        MedBindTrainer(model=MedBindModel(MedBindConfig.from_preset("tiny")), contrastive_chunk_size=0)


def test_paper_preset_decays_every_parameter_without_clipping_and_the_demo_keeps_the_trainer_defaults():
    from types import SimpleNamespace

    from medbind_training.pretraining import parse_pretraining_arguments

    model = MedBindModel(MedBindConfig.from_preset("tiny"))
    names = [name for name, _ in model.named_parameters()]
    trainer = object.__new__(MedBindTrainer)  # only the decay rule is under test, no training state needed
    trainer.args = SimpleNamespace(weight_decay_exemptions=True)
    exempted = set(names) - set(trainer.get_decay_parameter_names(model))
    assert exempted and all("bias" in name or "norm" in name.lower() for name in exempted)  # the Trainer's default
    trainer.args = SimpleNamespace(weight_decay_exemptions=False)
    assert trainer.get_decay_parameter_names(model) == names
    paper = parse_pretraining_arguments(["--output_dir", "unused"])[2]  # the default preset
    demo = parse_pretraining_arguments(["--preset", "demo", "--output_dir", "unused"])[2]
    assert (paper.max_grad_norm, paper.weight_decay_exemptions) == (0.0, False)
    assert (demo.max_grad_norm, demo.weight_decay_exemptions) == (1.0, True)
