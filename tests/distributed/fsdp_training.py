"""Run under `accelerate launch --multi_gpu --num_processes 2 fsdp_training.py OUT_DIR` (CPU, gloo).

accelerate turns FSDP on only for GPU-like backends, so this script shards the model itself with FSDP2's
`fully_shard` (one unit per `_no_split_modules` block, then the root: what `training/accelerate/fsdp.yaml` asks
accelerate to do) and checks, on each process:

- a whole-batch step and a gradient-cached step in chunks of 1 give the same loss and gradient shards;
- a sharded checkpoint (torch.distributed.checkpoint) of model and optimizer, loaded into a fresh sharded model,
  gives back the same weights and loss.

Each process writes `rank{N}.json` with what it found; `tests/test_fsdp.py` reads them.
"""

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from accelerate import Accelerator
from medbind_training.gradient_cache import gradient_cached_step
from medbind_training.losses import batch_loss
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from modeling_medbind import MedBindConfig, MedBindModel

# A LayerNorm CXR tower (a tiny Swin) and no dropout: chunked and whole-batch steps must agree (gradient_cache.py).
CONFIG = {
    "cxr_config": {"model_name": "swin_tiny_patch4_window7_224", "image_size": 56,
                   "model_kwargs": {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2]}},
    "ecg_config": {"hidden_dropout_prob": 0.0, "attention_dropout": 0.0, "patch_size": 50},
    "text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
}  # fmt: skip


def sharded_model(mesh, seed: int) -> MedBindModel:
    torch.manual_seed(seed)
    model = MedBindModel(MedBindConfig.from_preset("tiny", **CONFIG))
    blocks = set(model._no_split_modules)
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def local_batch(rank: int) -> dict:
    generator = torch.Generator().manual_seed(rank)
    return {"pixel_values": torch.randn(2, 3, 56, 56, generator=generator),
            "ecg_values": torch.randn(2, 12, 1000, generator=generator),
            "input_ids": torch.randint(5, 500, (4, 12), generator=generator), "pair_index": torch.tensor([[0, 1]])}


def gradient_shards(model: MedBindModel) -> dict[str, torch.Tensor]:
    return {name: p.grad.to_local().clone() for name, p in model.named_parameters() if p.grad is not None}


def close_at_scale(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """
    Equal to 1e-4 of the gradient's largest entry (float32 sums in another order), or to 1e-5 for gradients that
    are rounding noise around zero (BERT's key bias: softmax ignores a shift of all scores). A shard may be empty.
    """
    scale = expected.abs().amax().item() if expected.numel() else 0.0
    return torch.allclose(got, expected, rtol=0.0, atol=1e-4 * scale + 1e-5)


@contextmanager
def no_gradient_sync(model):
    # What accelerate's `no_sync` does for an FSDP2 model.
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def main(out_dir: Path) -> None:
    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    mesh = init_device_mesh("cpu", (accelerator.num_processes,))
    model = sharded_model(mesh, seed=0)
    batch = local_batch(rank)
    found = {"all_parameters_sharded": all(type(p).__name__ == "DTensor" for p in model.parameters())}

    whole = batch_loss(model, batch).loss
    whole.backward()
    whole_grads = gradient_shards(model)
    model.zero_grad(set_to_none=True)
    chunked = gradient_cached_step(model, batch, chunk_size=1, no_sync=lambda: no_gradient_sync(model))
    chunked_grads = gradient_shards(model)
    found["chunked_loss_matches"] = abs(chunked.loss.item() - whole.item()) < 1e-4 * abs(whole.item())
    found["chunked_gradients_match"] = whole_grads.keys() == chunked_grads.keys() and all(
        close_at_scale(chunked_grads[name], grad) for name, grad in whole_grads.items())  # fmt: skip

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer.step()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(out_dir / "checkpoint"))
    model.eval()
    with torch.no_grad():
        saved_loss = batch_loss(model, batch).loss.item()

    resumed = sharded_model(mesh, seed=1)
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-3)
    model_state, optimizer_state = get_state_dict(resumed, resumed_optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(out_dir / "checkpoint"))
    set_state_dict(resumed, resumed_optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    resumed.eval()
    with torch.no_grad():
        found["resumed_loss_matches"] = batch_loss(resumed, batch).loss.item() == saved_loss
    model.train(), resumed.train()  # the root group holds unsharded weights after an eval forward; reshard first
    model.reshard(), resumed.reshard()
    found["resumed_weights_match"] = all(torch.equal(a.to_local(), b.to_local())
                                         for a, b in zip(model.parameters(), resumed.parameters()))  # fmt: skip
    found["resumed_optimizer_steps"] = [s["step"].item() for s in resumed_optimizer.state.values()][:1] == [1.0]
    (out_dir / f"rank{rank}.json").write_text(json.dumps(found))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
