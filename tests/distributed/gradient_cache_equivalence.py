"""Run under `accelerate launch --multi_gpu --num_processes 2 gradient_cache_equivalence.py OUT_DIR` (CPU, gloo).

Each process takes 4 rows of `loss_equivalence`'s global batch of 8 and runs one gradient-cached step in chunks of 3
(a chunk of 3 and a chunk of 1) through DDP; process 0 writes the loss and the averaged gradients, which
`tests/test_gradient_cache.py` compares with one process on the whole batch at once.
"""

import sys
from pathlib import Path

from accelerate import Accelerator
from loss_equivalence import model_batch, tiny_model  # this folder is first on sys.path when run as a script
from medbind_training.gradient_cache import gradient_cached_step
from safetensors.torch import save_file

ROWS_PER_PROCESS, CHUNK_SIZE = 4, 3


def main(out_dir: Path) -> None:
    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    model = accelerator.prepare(tiny_model())  # eval mode: no dropout, BatchNorm on running statistics
    rows = slice(ROWS_PER_PROCESS * rank, ROWS_PER_PROCESS * (rank + 1))
    output = gradient_cached_step(
        model,
        model_batch(rows),
        CHUNK_SIZE,
        loss_model=accelerator.unwrap_model(model),
        backward=accelerator.backward,
        no_sync=lambda: accelerator.no_sync(model),
    )
    if accelerator.is_main_process:
        grads = {name: p.grad.contiguous() for name, p in accelerator.unwrap_model(model).named_parameters()
                 if p.grad is not None}  # fmt: skip
        for name in ("loss", "tmcl_loss", "emcl_loss"):
            grads[f"__{name}__"] = output[name].reshape(1)
        save_file(grads, out_dir / "chunked_grads.safetensors")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
