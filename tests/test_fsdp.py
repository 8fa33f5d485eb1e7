"""FSDP2 on two CPU processes: MedBind shards by its `_no_split_modules`, trains in chunks, and resumes exactly."""

import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "distributed" / "fsdp_training.py"


@pytest.mark.slow
def test_sharded_model_steps_in_chunks_and_resumes_from_a_sharded_checkpoint(accelerate_launch, tmp_path):
    accelerate_launch(SCRIPT, tmp_path)
    for rank in range(2):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert found == {
            "all_parameters_sharded": True,
            "chunked_loss_matches": True,
            "chunked_gradients_match": True,
            "resumed_loss_matches": True,
            "resumed_weights_match": True,
            "resumed_optimizer_steps": True,
        }, f"process {rank}"
