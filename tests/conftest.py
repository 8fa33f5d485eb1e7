"""Fixtures shared by the test suite."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# CI runs two xdist workers on two cores: one thread each keeps them from oversubscribing the machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# ../shared/data beside the checkout holds real public samples; a user's clone has no such folder.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def medbind_processor():
    """A `MedBindProcessor` with a 200-token vocabulary of the reports of `samples.cxr_dataset` / `ecg_dataset`."""
    from modeling_medbind import MedBindECGFeatureExtractor, MedBindImageProcessor, MedBindProcessor
    from medbind_training.tokenizer import train_wordpiece_tokenizer

    reports = ["Chest radiograph heart size normal enlarged", "ECG presents sinus rhythm tachycardia"] * 5
    return MedBindProcessor(MedBindImageProcessor(), MedBindECGFeatureExtractor(), train_wordpiece_tokenizer(reports, 200))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A saved tiny MedBind folder with its processor (`tiny_medbind.save_tiny_medbind`), shared read-only."""
    from tiny_medbind import save_tiny_medbind

    return save_tiny_medbind(tmp_path_factory.mktemp("medbind-tiny"))


@pytest.fixture(scope="session")
def loaded(model_dir):
    """`model_dir` loaded once: `(MedBindModel in eval mode, MedBindProcessor)`, shared read-only."""
    from transformers import AutoModel, AutoProcessor

    return AutoModel.from_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def image_processor():
    """The default `MedBindImageProcessor` (the timm Swin-T's input)."""
    from modeling_medbind import MedBindImageProcessor

    return MedBindImageProcessor()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public sample files, or a skip where it is absent (as on a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside the project's own checkouts)")
    return SHARED_DATA


# Run in a fresh interpreter in which `import modeling_medbind` fails, as on a machine where only the Hub folder
# exists: the editable install makes the package importable from anywhere, so a meta-path finder refuses it.
_BLOCK_MEDBIND = """
import importlib.abc, sys
class _RefuseMedBind(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_medbind" or name.startswith("modeling_medbind."):
            raise ImportError("modeling_medbind is deliberately not importable in this process")
sys.meta_path.insert(0, _RefuseMedBind())
try:
    import modeling_medbind
    raise SystemExit("modeling_medbind was importable: the test would not prove remote-code loading")
except ImportError:
    pass
"""


@pytest.fixture
def run_without_medbind(tmp_path):
    """Return a function that runs Python `code` in a subprocess where `modeling_medbind` cannot be imported."""

    def run(code: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
        result = subprocess.run([sys.executable, "-c", _BLOCK_MEDBIND + code], cwd=tmp_path, env=env,
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def accelerate_launch():
    """
    Return a function running `script args...` in N CPU processes through `accelerate launch` (gloo on loopback).

    accelerate's `--cpu` flag starts N processes only through mpirun; without MPI it starts one. `--multi_gpu` starts
    them through torchrun instead, and ACCELERATE_USE_CPU keeps them on the CPU, where accelerate picks gloo.
    """

    def launch(script, *args: str, num_processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), str(script), *map(str, args),
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"accelerate launch failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    return launch
