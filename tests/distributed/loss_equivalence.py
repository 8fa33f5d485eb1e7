"""Run under `accelerate launch --cpu --num_processes 2 loss_equivalence.py OUT_DIR`.

Each process takes its rows of one global batch and writes what it computed; `tests/test_losses.py` compares that
with a single process on the whole batch (`single_process_reference`, importable without torch.distributed).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from medbind_training.losses import batch_loss, emcl_loss, tmcl_loss

from modeling_medbind import MedBindConfig, MedBindModel

GLOBAL_ROWS = 8
# Uneven on purpose (5 + 3 rows, 3 + 1 pairs): the gather must cope with processes holding different counts.
SPLITS = {2: [slice(0, 5), slice(5, 8)]}
PAIR_SPLITS = {2: [slice(0, 3), slice(3, 4)]}
TEXT_GROUPS = torch.tensor([0, 1, 2, 0, 3, 1, 4, 0])  # identical reports across the two processes' rows


def global_embeds(seed: int, rows: int = GLOBAL_ROWS) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, 16, generator=generator, dtype=torch.float64), dim=-1)


def loss_and_grad(name, rows: slice, pair_rows: slice, batch_size: int):
    text, modality = global_embeds(1)[rows].requires_grad_(), global_embeds(2)[rows]
    if name == "tmcl":
        loss = tmcl_loss(text, modality, TEXT_GROUPS[rows])
        (grad,) = torch.autograd.grad(loss, text)
        return loss.detach(), grad
    cxr, ecg = global_embeds(3, 4)[pair_rows].requires_grad_(), global_embeds(4, 4)[pair_rows]
    loss = emcl_loss(cxr, ecg, batch_size)
    (grad,) = torch.autograd.grad(loss, cxr)
    return loss.detach(), grad


def tiny_model() -> MedBindModel:
    torch.manual_seed(0)
    return MedBindModel(MedBindConfig.from_preset("tiny")).eval()  # eval: no dropout, so ranks are comparable


def model_batch(rows: slice) -> dict:
    generator = torch.Generator().manual_seed(5)
    pixel_values = torch.randn(GLOBAL_ROWS, 3, 224, 224, generator=generator)
    cxr_reports = torch.randint(5, 500, (GLOBAL_ROWS, 12), generator=generator)
    ecg_values = torch.randn(GLOBAL_ROWS, 12, 1000, generator=generator)
    ecg_reports = torch.randint(5, 500, (GLOBAL_ROWS, 12), generator=generator)
    # A training batch's texts: the CXRs' reports, then the ECGs'.
    local = {"pixel_values": pixel_values[rows], "ecg_values": ecg_values[rows],
             "input_ids": torch.cat([cxr_reports[rows], ecg_reports[rows]]),
             "text_group_ids": torch.cat([TEXT_GROUPS[rows], TEXT_GROUPS.flip(0)[rows]])}  # fmt: skip
    # Pairs are (cxr row, ecg row) in local row numbers: global pairs (0,1), (2,2), (3,0), (6,7), (7,5),
    # each inside one process's rows (a visit's CXR and ECG always travel together).
    global_pairs = torch.tensor([[0, 1], [2, 2], [3, 0], [6, 7], [7, 5]])
    inside = (global_pairs >= rows.start).all(1) & (global_pairs < rows.stop).all(1)
    local["pair_index"] = global_pairs[inside] - rows.start
    return local


def single_process_reference() -> dict:
    reference = {}
    for name in ("tmcl", "emcl"):
        loss_grad = loss_and_grad(name, slice(0, GLOBAL_ROWS), slice(0, 4), GLOBAL_ROWS)
        reference[f"{name}_loss"], reference[f"{name}_grad"] = loss_grad
    model = tiny_model()
    loss = batch_loss(model, model_batch(slice(0, GLOBAL_ROWS))).loss
    loss.backward()
    reference["model_loss"] = loss.detach()
    reference["model_grads"] = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return reference


def main(out_dir: Path) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    rank, world_size = accelerator.process_index, accelerator.num_processes
    rows, pair_rows = SPLITS[world_size][rank], PAIR_SPLITS[world_size][rank]
    result = {}
    for name in ("tmcl", "emcl"):
        result[f"{name}_loss"], result[f"{name}_grad"] = loss_and_grad(name, rows, pair_rows, rows.stop - rows.start)
    save_file(result, out_dir / f"rank{rank}.safetensors")

    # Model level: DDP (through accelerate) on 4 + 4 rows must take the single-process step on 8.
    model = accelerator.prepare(tiny_model())
    loss = batch_loss(model, model_batch(slice(4 * rank, 4 * rank + 4)), accelerator.unwrap_model(model)).loss
    accelerator.backward(loss)
    if accelerator.is_main_process:
        grads = {name: p.grad.contiguous() for name, p in accelerator.unwrap_model(model).named_parameters()
                 if p.grad is not None}  # fmt: skip
        grads["__loss__"] = loss.detach().reshape(1)
        save_file(grads, out_dir / "model_grads.safetensors")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
