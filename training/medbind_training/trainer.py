"""MedBindTrainer: the transformers Trainer with MEDBind's loss, retrieval evaluation and atomic checkpoints.

Everything goes through the Trainer's public surface (constructor arguments, `training_step`, `compute_loss`,
`evaluate`, `log`, `save_model`, callbacks) except two hooks transformers offers only as private methods; both sit in
the last section of `MedBindTrainer`, and tests/test_trainer.py fails when transformers changes either.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections import defaultdict
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, send_to_device
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints, sort_checkpoints

from medbind_training.losses import MedBindLossOutput, batch_loss

from .data import PretrainingDataset, SlotSampler
from .evaluation_tasks import validation_retrieval
from .gradient_cache import MODALITY_INPUT, batch_rows, gradient_cached_step
from .splits import RetrievalSplit

# Where the Trainer writes checkpoint-N before `AtomicCheckpoints` renames it into the run folder. The name does not
# match `checkpoint-<step>`, so neither resume_from_checkpoint nor the checkpoint rotation ever takes it.
STAGING_DIR = "tmp-checkpoints"


class TokenFreeTrainer(Trainer):
    """A `Trainer` whose saved (and pushed) `training_args.bin` never holds the Hub token."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # The library pickles the arguments whole, token included, into every folder it saves (checkpoints too) and
        # pushes that file: write it again without the token before anything is pushed.
        super().save_model(output_dir, _internal_call=True)
        if self.args.should_save and self.args.hub_token is not None:
            args = copy.copy(self.args)
            args.hub_token = None
            torch.save(args, os.path.join(output_dir or self.args.output_dir, TRAINING_ARGS_NAME))
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)


class AtomicCheckpoints(TrainerCallback):
    """Publishes each checkpoint the Trainer wrote into `output_dir/STAGING_DIR` by renaming it to `output_dir`
    (rename is atomic on one filesystem), once every process has written its part, then applies
    `save_total_limit`: a run killed while saving never leaves a half-written `checkpoint-N` for
    `resume_from_checkpoint` to pick up. At the start of training it clears what an interrupted save left staged.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if args.should_save:
            shutil.rmtree(os.path.join(args.output_dir, STAGING_DIR), ignore_errors=True)
        PartialState().wait_for_everyone()

    def on_save(self, args, state, control, **kwargs):
        PartialState().wait_for_everyone()
        name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        staged = os.path.join(args.output_dir, STAGING_DIR, name)
        if state.best_global_step:
            # Inside the staging folder the library could not see the earlier best checkpoint: point at it.
            best = f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}"
            state.best_model_checkpoint = os.path.join(args.output_dir, best)
        if args.should_save:
            if state.best_global_step:
                state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
            final = os.path.join(args.output_dir, name)
            if os.path.exists(final):  # a checkpoint of the same step from an earlier, interrupted attempt
                shutil.rmtree(final)
            os.replace(staged, final)
            shutil.rmtree(os.path.join(args.output_dir, STAGING_DIR))
            rotate_checkpoints(
                output_dir=args.output_dir, save_total_limit=args.save_total_limit,
                best_model_checkpoint=state.best_model_checkpoint, use_mtime=False,
            )  # fmt: skip
        PartialState().wait_for_everyone()

    def on_train_end(self, args, state, control, **kwargs):
        # What the library does at the end of training in the folder it saved into (here the staging folder): with
        # save_total_limit=1, only the best checkpoint stays.
        if args.should_save and state.best_model_checkpoint is not None and args.save_total_limit == 1:
            for checkpoint in sort_checkpoints(args.output_dir, best_model_checkpoint=state.best_model_checkpoint):
                if not os.path.samefile(checkpoint, state.best_model_checkpoint):
                    shutil.rmtree(checkpoint, ignore_errors=True)


class MedBindTrainer(TokenFreeTrainer):
    """A `Trainer` for MedBind pretraining. On top of the library's loop it:

    - computes TMCL + EMCL on the model's embeddings (`medbind_training.losses.batch_loss`) and logs `tmcl_loss` and
      `emcl_loss` beside `loss`;
    - deals batches with `SlotSampler` (n CXR and n ECG per batch, m of them visit pairs), identical on every
      process and after a resume, since the order is a function of (seed, epoch);
    - evaluates by retrieval recall@K on `eval_dataset`, a `RetrievalSplit`, with the test evaluation's code
      (`validation_retrieval`; `eval_recall_sum`, the sum of every recall, makes a good `metric_for_best_model`);
    - writes each checkpoint atomically (`AtomicCheckpoints`).

    With gradient accumulation the contrastive negatives are those of each micro-batch, not of the accumulated batch;
    for a contrastive batch larger than memory allows, keep it as one micro-batch and set `contrastive_chunk_size`
    (gradient caching, exact: see `training_step`), the samples per modality embedded at a time.
    """

    def __init__(self, *args: Any, contrastive_chunk_size: int | None = None, **kwargs: Any):
        if contrastive_chunk_size is not None and contrastive_chunk_size < 1:
            raise ValueError(f"contrastive_chunk_size must be at least 1, got {contrastive_chunk_size}")
        super().__init__(*args, **kwargs)
        self.contrastive_chunk_size = contrastive_chunk_size
        self._loss_parts: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.add_callback(AtomicCheckpoints())

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """The parameters AdamW decays: the Trainer's choice (all but biases and LayerNorm weights) unless the
        arguments' `weight_decay_exemptions` is False, then every parameter (the paper names AdamW's weight decay and no
        exemption).
        """
        if getattr(self.args, "weight_decay_exemptions", True):
            return super().get_decay_parameter_names(model)
        return [name for name, _ in model.named_parameters()]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = batch_loss(model, inputs, loss_model=self.accelerator.unwrap_model(model))
        if model.training:
            self._record_loss_parts(outputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _record_loss_parts(self, outputs: MedBindLossOutput) -> None:
        # Kept on the device until `log`: reading them here would be a host sync per step.
        for name in ("tmcl_loss", "emcl_loss"):
            if (value := getattr(outputs, name)) is not None:
                self._loss_parts[name].append(value.detach())

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """The library's step, or, with `contrastive_chunk_size` smaller than the batch, the same step by gradient
        caching (`medbind_training.gradient_cache`): the loss and gradients of the whole micro-batch, embedded
        `contrastive_chunk_size` samples per modality at a time. Returns the detached loss divided by the gradient
        accumulation steps, as the library's step returns it.
        """
        chunk_size = self.contrastive_chunk_size
        if not chunk_size or max(batch_rows(inputs, modality) for modality in MODALITY_INPUT) <= chunk_size:
            return super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise ValueError("contrastive_chunk_size does not work with DeepSpeed, whose engine steps on every backward")
        unwrapped = self.accelerator.unwrap_model(model)
        if self.is_fsdp_enabled and unwrapped.logit_scale is not None:
            raise ValueError("contrastive_chunk_size with FSDP needs a fixed temperature (learnable_temperature=False)")
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = send_to_device(inputs, self.args.device)
        scale = 1.0 / self.current_gradient_accumulation_steps  # MedBindModel takes no loss kwargs: scale here
        # Inside the library's no_sync (a micro-batch before the last) every chunk accumulates anyway; otherwise all
        # chunks but the last do, so gradients are reduced once per optimizer step.
        no_sync = partial(self.accelerator.no_sync, model) if self.accelerator.sync_gradients else nullcontext
        outputs = gradient_cached_step(
            model, inputs, chunk_size, loss_model=unwrapped, backward=self.accelerator.backward, no_sync=no_sync,
            loss_scale=scale, context=self.compute_loss_context_manager,
        )  # fmt: skip
        self._record_loss_parts(outputs)
        return outputs.loss * scale

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_parts:
            # The loss parts are already global-batch values (the losses gather across processes): no reduction.
            for name, values in self._loss_parts.items():
                logs[name] = round(torch.stack(values).mean().item(), 4)
            self._loss_parts.clear()
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        split = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(split, RetrievalSplit):
            raise ValueError(f"MedBindTrainer evaluates a RetrievalSplit (validation CXR / ECG data), got {type(split)}")
        # Every process embeds the whole split: the metrics need all of it and no collective is involved.
        with self.autocast_smart_context_manager():
            metrics = validation_retrieval(
                self.accelerator.unwrap_model(self.model), self.processing_class, split,
                self.args.per_device_eval_batch_size, self.args.device,
            )  # fmt: skip
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Keep the MedBind card (README.md) `medbind_model_cards.medbind_pretrained` renders, not the library's."""

    # Private hooks of transformers 5.25, the only places it offers for these two choices (a public override of
    # `get_train_dataloader` would copy the library's loader construction; `_save_checkpoint` writes into
    # `_get_output_dir` with no public argument naming the folder). tests/test_trainer.py checks both still exist
    # with these signatures and are still used so.

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(train_dataset, PretrainingDataset):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return SlotSampler(train_dataset, seed)
        return super()._get_train_sampler(train_dataset)

    def _get_output_dir(self, trial) -> str:
        # The folder the library writes checkpoint-N into: the staging folder, published by `AtomicCheckpoints`.
        if trial is not None:
            raise ValueError("MedBindTrainer's atomic checkpoints do not support hyperparameter-search trials")
        return os.path.join(self.args.output_dir, STAGING_DIR)
