"""MedBindTrainer: the transformers Trainer with MEDBind's loss, retrieval evaluation and atomic checkpoints."""

from __future__ import annotations

import copy
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from modeling_medbind import MedBindModel

from .data import MODALITIES, MedBindPretrainingCollator, PretrainingDataset, SlotSampler, single_modality_slots
from .retrieval import chance_recall_at_k, flat_recalls, pair_relevance, recall_at_k, same_group

STAGING_PREFIX = "tmp-"


@dataclass
class RetrievalSplit:
    """One split to evaluate: its CXR and ECG datasets (either may be None) and its (CXR row, ECG row) pairs."""

    cxr: datasets.Dataset | None = None
    ecg: datasets.Dataset | None = None
    pairs: Sequence[tuple[int, int]] = field(default_factory=list)


@torch.no_grad()
def embed_split(
    model: MedBindModel,
    dataset: datasets.Dataset,
    modality: str,
    collator: MedBindPretrainingCollator,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """
    Embed every row of a one-modality split and its reports.

    Returns:
        `{"embeds": [N, d], "text_embeds": [N, d], "text_group_ids": [N]}` on the CPU.
    """
    loader = DataLoader(single_modality_slots(dataset, modality), batch_size=batch_size, collate_fn=collator)
    parts = defaultdict(list)
    for batch in tqdm(loader, desc=f"embedding {modality.upper()}", leave=False):
        batch = {key: value.to(device) for key, value in batch.items()}
        output = model(**{key: value for key, value in batch.items() if key not in ("pair_index", "text_group_ids")})
        parts["embeds"].append(output[f"{modality}_embeds"].float().cpu())
        parts["text_embeds"].append(output.text_embeds.float().cpu())
        parts["text_group_ids"].append(batch["text_group_ids"].cpu())
    return {key: torch.cat(values) for key, values in parts.items()}


def retrieval_metrics(
    model: MedBindModel,
    split: RetrievalSplit,
    collator: MedBindPretrainingCollator,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """
    Recall@1/5/10 of every direction the split allows, in percent: `{modality}_to_text` (identical reports count
    as hits), `cxr_to_ecg` and `ecg_to_cxr` over its visit pairs; `rsum`, their sum; and `{direction}/chance@K`,
    what a random ranking would score on the same split.
    """
    was_training = model.training
    model.eval()
    embedded = {
        modality: embed_split(model, data, modality, collator, batch_size, device)
        for modality in MODALITIES
        if (data := getattr(split, modality)) is not None and len(data) > 0
    }
    model.train(was_training)
    directions = {}  # direction -> (queries, candidates, relevance)
    for modality, parts in embedded.items():
        relevant = same_group(parts["text_group_ids"], parts["text_group_ids"])
        directions[f"{modality}_to_text"] = (parts["embeds"], parts["text_embeds"], relevant)
    if split.pairs and len(embedded) == 2:
        cxr_rows, ecg_rows, relevant = pair_relevance(split.pairs)
        cxr, ecg = embedded["cxr"]["embeds"][cxr_rows], embedded["ecg"]["embeds"][ecg_rows]
        directions["cxr_to_ecg"] = (cxr, ecg, relevant)
        directions["ecg_to_cxr"] = (ecg, cxr, relevant.T)
    recalls: dict[str, float] = {}
    chances: dict[str, float] = {}
    for direction, (queries, candidates, relevant) in directions.items():
        recalls.update(flat_recalls(direction, recall_at_k(queries, candidates, relevant)))
        chances.update(flat_recalls(direction, chance_recall_at_k(relevant), name="chance"))
    return {**recalls, "rsum": sum(recalls.values()), **chances}


class MedBindTrainer(Trainer):
    """
    A `Trainer` for MedBind pretraining. On top of the library's loop it:

    - computes TMCL + EMCL through the model and logs `tmcl_loss` and `emcl_loss` beside `loss`;
    - deals batches with `SlotSampler` (n CXR and n ECG per batch, m of them visit pairs), identical on every
      process and after a resume, since the order is a function of (seed, epoch);
    - evaluates by retrieval recall@K on `eval_dataset`, a `RetrievalSplit` (`eval_rsum` makes a good
      `metric_for_best_model`);
    - writes each checkpoint into a staging folder and renames it into place, so a killed run never leaves a
      half-written `checkpoint-N` for `resume_from_checkpoint` to pick up.

    With gradient accumulation the contrastive negatives are those of each micro-batch, not of the accumulated batch.

    Args:
        eval_collator: the collator without augmentation (default: `data_collator`).
    """

    def __init__(self, *args: Any, eval_collator: MedBindPretrainingCollator | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_collator = eval_collator or self.data_collator
        self._loss_parts: dict[str, list[torch.Tensor]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, return_loss=True)
        if model.training:
            for name in ("tmcl_loss", "emcl_loss"):
                if (value := getattr(outputs, name)) is not None:
                    self._loss_parts[name].append(value.detach())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

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
            metrics = retrieval_metrics(
                self.accelerator.unwrap_model(self.model),
                split,
                self.eval_collator,
                self.args.per_device_eval_batch_size,
                self.args.device,
            )
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Keep the MedBind card (README.md) that `medbind.training.model_card` writes; the library's would replace it."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save and self.args.hub_token is not None:
            # The library pickles the arguments whole, token included, and pushes that file: write it without.
            args = copy.copy(self.args)
            args.hub_token = None
            torch.save(args, os.path.join(output_dir or self.args.output_dir, TRAINING_ARGS_NAME))

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


__all__ = ["MedBindTrainer", "RetrievalSplit", "embed_split", "retrieval_metrics"]
