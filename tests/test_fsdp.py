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
        checks = ["all_parameters_sharded", "chunked_loss_matches", "chunked_gradients_match", "resumed_loss_matches",
                  "resumed_weights_match", "resumed_optimizer_steps"]  # fmt: skip
        assert found == dict.fromkeys(checks, True), f"process {rank}"
