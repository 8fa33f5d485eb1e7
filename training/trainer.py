"""MedBindTrainer: the transformers Trainer with MEDBind's loss, retrieval evaluation and atomic checkpoints."""

from __future__ import annotations

import copy
import os
import shutil
from collections import defaultdict
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch
from accelerate.utils import DistributedType
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from medbind_training.losses import MedBindLossOutput, batch_loss

from .data import PretrainingDataset, SlotSampler
from .evaluation import RetrievalSplit, validation_retrieval
from .gradient_cache import MODALITY_INPUT, batch_rows, gradient_cached_step

STAGING_PREFIX = "tmp-"


class TokenFreeTrainer(Trainer):
    """A `Trainer` whose saved (and pushed) `training_args.bin` never holds the Hub token."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save and self.args.hub_token is not None:
            # The library pickles the arguments whole, token included, and pushes that file: write it without.
            args = copy.copy(self.args)
            args.hub_token = None
            torch.save(args, os.path.join(output_dir or self.args.output_dir, TRAINING_ARGS_NAME))


class MedBindTrainer(TokenFreeTrainer):
    """
    A `Trainer` for MedBind pretraining. On top of the library's loop it:

    - computes TMCL + EMCL on the model's embeddings (`medbind_training.losses.batch_loss`) and logs `tmcl_loss` and `emcl_loss` beside `loss`;
    - deals batches with `SlotSampler` (n CXR and n ECG per batch, m of them visit pairs), identical on every
      process and after a resume, since the order is a function of (seed, epoch);
    - evaluates by retrieval recall@K on `eval_dataset`, a `RetrievalSplit`, with `processing_class` (the
      `MedBindProcessor`), through `medbind.training.evaluation.validation_retrieval`, the code `evaluate.py` runs
      (`eval_recall_sum`, the sum of every recall, makes a good `metric_for_best_model`);
    - writes each checkpoint into a staging folder and renames it into place, so a killed run never leaves a
      half-written `checkpoint-N` for `resume_from_checkpoint` to pick up.

    With gradient accumulation the contrastive negatives are those of each micro-batch, not of the accumulated batch;
    for a contrastive batch larger than memory allows, keep it as one micro-batch and set `contrastive_chunk_size`
    (gradient caching, exact: see `training_step`).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._loss_parts: dict[str, list[torch.Tensor]] = defaultdict(list)

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
        """
        The library's step, or, with `args.contrastive_chunk_size` (a `PretrainingArguments` field) smaller than the
        batch, the same step by gradient caching (`medbind.training.gradient_cache`): the loss and gradients of the
        whole micro-batch, embedded `contrastive_chunk_size` samples per modality at a time.

        Returns:
            the detached loss divided by the gradient accumulation steps, as the library's step returns it.

        Raises:
            ValueError: gradient caching under DeepSpeed (its engine steps on every backward call), or under FSDP with
                a learned temperature (read outside the sharded forward).
        """
        chunk_size = getattr(self.args, "contrastive_chunk_size", None)
        if not chunk_size or max(batch_rows(inputs, modality) for modality in MODALITY_INPUT) <= chunk_size:
            return super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise ValueError("--contrastive_chunk_size does not work with DeepSpeed, whose engine steps on every backward")
        unwrapped = self.accelerator.unwrap_model(model)
        if self.is_fsdp_enabled and unwrapped.logit_scale is not None:
            raise ValueError("--contrastive_chunk_size with FSDP needs a fixed temperature (learnable_temperature=False)")
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        scale = 1.0 / self.current_gradient_accumulation_steps  # MedBindModel takes no loss kwargs: scale here
        # Inside the library's no_sync (a micro-batch before the last) every chunk accumulates anyway; otherwise all
        # chunks but the last do, so gradients are reduced once per optimizer step.
        no_sync = partial(self.accelerator.no_sync, model) if self.accelerator.sync_gradients else nullcontext
        outputs = gradient_cached_step(
            model,
            inputs,
            chunk_size,
            loss_model=unwrapped,
            backward=self.accelerator.backward,
            no_sync=no_sync,
            loss_scale=scale,
            context=self.compute_loss_context_manager,
        )
        self._record_loss_parts(outputs)
        return outputs.loss * scale

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_parts:
            # The loss parts are already global-batch values (the losses gather across processes): no reduction.
            for name, values in self._loss_parts.items():
                logs[name] = round(torch.stack(values).mean().item(), 4)
            self._loss_parts.clear()
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(train_dataset, PretrainingDataset):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return SlotSampler(train_dataset, seed)
        return super()._get_train_sampler(train_dataset)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        split = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(split, RetrievalSplit):
            raise ValueError(f"MedBindTrainer evaluates a RetrievalSplit (validation CXR / ECG data), got {type(split)}")
        # Every process embeds the whole split: the metrics need all of it and no collective is involved.
        with self.autocast_smart_context_manager():
            metrics = validation_retrieval(
                self.accelerator.unwrap_model(self.model),
                self.processing_class,
                split,
                self.args.per_device_eval_batch_size,
                self.args.device,
            )
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Keep the MedBind card (README.md) that `medbind.training.model_card` writes; the library's would replace it."""

    def _save_checkpoint(self, model, trial) -> None:
        # The library writes checkpoint-N in place; here it writes it inside a staging folder beside it, which is
        # renamed into place once every process has written its part (rename is atomic on one filesystem).
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, f"{STAGING_PREFIX}{name}")
        output_dir = self.args.output_dir
        self.args.output_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = output_dir
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            if self.state.best_global_step:
                # Inside the staging folder the library could not see the earlier best checkpoint: point at it.
                best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
                self.state.best_model_checkpoint = best
                self.state.save_to_json(os.path.join(staging, name, "trainer_state.json"))
            final = os.path.join(run_dir, name)
            if os.path.exists(final):  # a checkpoint of the same step from an earlier, interrupted attempt
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()


__all__ = ["MedBindTrainer"]
