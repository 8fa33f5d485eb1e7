"""`--push_to_hub` in training/pretrain.py: the finished model folder, and only it, goes to the Hub in one commit.

The real entry point trains the tiny model on a small synthetic demo and pushes, with no request leaving the machine:
the Hub is `fake_hub.FakeHub`, an `httpx2.MockTransport` installed with `huggingface_hub.set_client_factory`. It
answers the calls of an upload (create repo, validate the card's YAML, preupload, LFS batch, LFS PUT, commit) and
records each of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import torch
from fake_hub import AGENT_REGISTRY, HUB, LFS_STORAGE, REPO_ID, TOKEN, FakeHub, serving
from huggingface_hub import ModelCard

from medbind_training.pretraining import main

CODE_FILES = {
    "configuration_medbind.py", "modeling_medbind.py", "processing_medbind.py", "image_processing_medbind.py",
    "feature_extraction_medbind.py", "tokenization_medbind.py", "pipeline_medbind.py", "hub_loading.py",
}  # fmt: skip
# A measured number of results.json (not a chance level, interval, RSUM or another model's): what the card indexes.
MEASURED_KEY = re.compile(
    r"(retrieval/[^/]+/\w+_to_\w+/recall@\d+|(zero_shot|cross_modality)/[^/]+/(balanced_accuracy|auroc)"
    r"|few_shot/[^/]+/k\d+/balanced_accuracy)"
)


@dataclass
class PushedRun:
    """A pretraining run pushed to the fake Hub: its local output folder, what the Hub received, main()'s metrics."""

    output_dir: Path
    hub: FakeHub
    metrics: dict[str, float]


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory) -> PushedRun:
    """
    `medbind_training.pretraining.main` with `--push_to_hub` on a 40-patient demo (1 epoch, one step of 8) against the fake Hub,
    online as far as huggingface_hub can tell, with its home (token, registry cache) in a temporary folder.
    """
    tmp = tmp_path_factory.mktemp("push")
    hf_home = tmp / "hf_home"
    hub = FakeHub()
    # Test workers share few cores: with two intra-op threads each, the training step took 10 s instead of 0.5 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with serving(hub, hf_home):
            metrics = main(
                [
                    "--preset", "demo", "--demo_num_patients", "40", "--dataset_dir", str(tmp / "data"),
                    "--output_dir", str(tmp / "out"), "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
                    "--max_train_samples", "8", "--report_to", "none",
                    "--push_to_hub", "true", "--hub_model_id", REPO_ID, "--hub_token", TOKEN,
                ]
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return PushedRun(output_dir=tmp / "out", hub=hub, metrics=metrics)


@pytest.mark.slow
def test_push_creates_the_repo_then_sends_one_commit(pushed_run):
    hub = pushed_run.hub
    assert hub.unexpected == []
    assert hub.created == [{"name": "tiny", "organization": "medbind-test"}]
    upload_calls = [(request.method, request.url) for request in hub.requests if request.url != AGENT_REGISTRY]
    assert upload_calls[0] == ("POST", f"{HUB}/api/repos/create")
    assert len(hub.commits) == 1, [commit[0]["value"]["summary"] for commit in hub.commits]
    assert hub.commits[0][0] == {"key": "header", "value": {"summary": "MedBind pretraining", "description": ""}}


@pytest.mark.slow
def test_hub_calls_carry_the_token_and_lfs_storage_gets_none(pushed_run):
    requests = [request for request in pushed_run.hub.requests if request.url != AGENT_REGISTRY]
    hub_calls = [request for request in requests if request.url.startswith(HUB)]
    storage_calls = [request for request in requests if request.url.startswith(LFS_STORAGE)]
    assert len(hub_calls) + len(storage_calls) == len(requests)
    assert {request.authorization for request in hub_calls} == {f"Bearer {TOKEN}"}
    assert storage_calls and {request.authorization for request in storage_calls} == {None}


@pytest.mark.slow
def test_weights_are_sent_as_one_lfs_safetensors_file_with_their_bytes(pushed_run):
    weights = (pushed_run.output_dir / "model.safetensors").read_bytes()
    assert pushed_run.hub.files()["model.safetensors"] == {
        "key": "lfsFile", "path": "model.safetensors", "algo": "sha256",
        "oid": hashlib.sha256(weights).hexdigest(), "size": len(weights),
    }  # fmt: skip
    assert pushed_run.hub.content("model.safetensors") == weights


@pytest.mark.slow
def test_config_with_auto_map_and_the_remote_code_files_are_sent_as_git_files(pushed_run):
    files = pushed_run.hub.files()
    config = json.loads(pushed_run.hub.content("config.json"))
    assert config["auto_map"] == {
        "AutoConfig": "configuration_medbind.MedBindConfig",
        "AutoModel": "modeling_medbind.MedBindModel",
        "AutoModelForZeroShotImageClassification": "modeling_medbind.MedBindModel",
    }
    assert set(config["custom_pipelines"]) == {
        "zero-shot-ecg-classification", "zero-shot-cxr-classification", "medbind-feature-extraction",
    }  # fmt: skip
    assert config["architectures"] == ["MedBindModel"]
    assert {name: files[name]["key"] for name in CODE_FILES if name in files} == dict.fromkeys(CODE_FILES, "file")
    assert b"class MedBindModel" in pushed_run.hub.content("modeling_medbind.py")


@pytest.mark.slow
def test_processor_and_the_tokenizer_matching_the_model_are_sent(pushed_run):
    processor = json.loads(pushed_run.hub.content("processor_config.json"))
    assert processor["auto_map"] == {"AutoProcessor": "processing_medbind.MedBindProcessor"}
    assert {"image_processor", "feature_extractor"} <= processor.keys()
    assert "tokenizer_config.json" in pushed_run.hub.files()
    vocab = json.loads(pushed_run.hub.content("tokenizer.json"))["model"]["vocab"]
    config = json.loads(pushed_run.hub.content("config.json"))
    assert len(vocab) == config["text_config"]["vocab_size"]


@pytest.mark.slow
def test_model_card_indexes_the_numbers_of_results_json_and_warns_of_synthetic_data(pushed_run):
    card = ModelCard(pushed_run.hub.content("README.md").decode())
    results = json.loads(pushed_run.hub.content("results.json"))
    assert results == pushed_run.metrics and results["split"] == "test"
    assert {"synthetic", "medbind"} <= set(card.data.tags) and "**Trained on SYNTHETIC data.**" in card.text
    measured = [value for key, value in results.items() if MEASURED_KEY.fullmatch(key)]
    indexed = [result.metric_value for result in card.data.eval_results]
    assert measured and sorted(indexed) == sorted(measured)
    assert {result.dataset_split for result in card.data.eval_results} == {"test"}
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card.text


@pytest.mark.slow
def test_no_report_text_or_row_value_of_the_training_data_is_in_the_card(pushed_run):
    card = pushed_run.hub.content("README.md").decode()
    values = set()
    for name in ("cxr", "ecg", "pairs"):
        for split in datasets.load_from_disk(pushed_run.output_dir.parent / "data" / name).values():
            for column, feature in split.features.items():
                if getattr(feature, "dtype", None) == "string":  # reports, paths, string ids
                    values |= {value for value in split[column] if value and len(value) >= 12}
                elif getattr(feature, "dtype", None) == "int64" and column.endswith("_id"):
                    values |= {str(value) for value in split[column] if value is not None and value >= 10_000}
    assert len(values) > 40  # the demo's reports and ids were read
    assert sorted(value for value in values if value in card) == []


@pytest.mark.slow
def test_the_files_of_the_output_folder_and_nothing_else_are_sent_byte_for_byte(pushed_run):
    files = pushed_run.hub.files()
    # The run leaves its checkpoint (with optimizer state) in the folder: it must stay local.
    assert list(pushed_run.output_dir.glob("checkpoint-*/optimizer.pt"))
    assert [path for path in files if "/" in path or path.startswith("checkpoint-")] == []
    assert [path for path in files if re.search(r"\.(pt|pth|ckpt)$|^pytorch_model.*\.bin$", path)] == []
    assert files.keys() == {path.name for path in pushed_run.output_dir.iterdir() if path.is_file()}
    for path in files:
        assert pushed_run.hub.content(path) == (pushed_run.output_dir / path).read_bytes(), path


@pytest.mark.slow
def test_no_pushed_file_holds_the_hub_token(pushed_run):
    # The Hub refuses a commit holding a valid token, and a public repo would publish it.
    leaking = [path for path in pushed_run.hub.files() if TOKEN.encode() in pushed_run.hub.content(path)]
    assert leaking == []
