"""A wheel is not a checkout: a non-editable `pip install .` into a fresh virtual environment gives the `medbind`
command, card rendering from package data and the `python -m medbind_training.pretraining` entry, run from elsewhere."""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb
from tiny_medbind import save_tiny_medbind

from modeling_medbind import CANONICAL_LEAD_NAMES, MedBindConfig
from medbind_model_cards.medbind_pretrained import render_model_card

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "outputs", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache")  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A fresh venv with this checkout installed as a wheel would be; its bin folder and a working folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)  # pip builds in the source folder: leave the checkout alone
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_packages,) = (venv / "lib").glob("python*/site-packages")
    # The dependencies (and pip) come from this environment instead of a download. A folder named in a .pth file
    # joins sys.path without its own .pth files being run, so this checkout's editable install does not leak in.
    (site_packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = venv / "bin" / "python"
    command = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", source]
    result = subprocess.run(command, capture_output=True, text=True, env=_environment(tmp))
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.rmtree(source)  # what runs now can only come from the installed wheel
    work = tmp / "elsewhere"
    work.mkdir()
    return {"bin": venv / "bin", "work": work, "site_packages": site_packages}


def _environment(tmp: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**environment, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp / "hf_modules")}


def run(installed: dict[str, Path], *command) -> subprocess.CompletedProcess:
    """Run a program of the fresh venv in a folder outside the checkout."""
    program = installed["bin"] / str(command[0])
    result = subprocess.run([program, *map(str, command[1:])], cwd=installed["work"], capture_output=True, text=True,
                            env=_environment(installed["work"]), timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_installed_wheel_brings_its_packages_the_command_the_card_and_the_pretraining_entry(installed, tmp_path):
    packages = installed["site_packages"]
    for installed_file in ("medbind/cli.py", "medbind_model_cards/medbind_pretrained.md",
                           "medbind_training/presets/pretrain/demo.yaml",
                           "medbind_training/trainer.py", "medbind_processing/rsna.py",
                           "modeling_medbind/pipeline_medbind.py"):  # fmt: skip
        assert (packages / installed_file).is_file(), installed_file
    assert not (packages / "processing").exists() and not (packages / "training").exists()  # no generic names
    assert "--preset" in run(installed, "python", "-m", "medbind_training.pretraining", "--help").stdout

    # The card, rendered again by the installed command from its packaged template.
    model_dir = save_tiny_medbind(tmp_path / "medbind-tiny")
    render_model_card(MedBindConfig.from_pretrained(model_dir), {}, {"epochs": 1}, "org/m", "Synthetic patients.",
                      synthetic=True).save(model_dir / "README.md")  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps({"split": "test", "zero_shot/ptbxl/balanced_accuracy": 42.5}))
    run(installed, "medbind", "card", "--model", model_dir, "--results", tmp_path / "results.json")
    assert "| PTB-XL | 42.5 |" in (model_dir / "README.md").read_text()

    # And a command on inputs: an ECG record and a text.
    signal = np.random.default_rng(0).normal(size=(5000, 12))
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEAD_NAMES), p_signal=signal,
                fmt=["16"] * 12, write_dir=str(tmp_path))  # fmt: skip
    output = tmp_path / "embeddings.safetensors"
    embedded = run(installed, "medbind", "embed", "--model", model_dir, "--ecg", tmp_path / "rec", "--text",
                   "Sinus rhythm.", "--output", output)  # fmt: skip
    assert "wrote 2 embeddings (1 ecg, 1 text)" in embedded.stdout and output.is_file()
