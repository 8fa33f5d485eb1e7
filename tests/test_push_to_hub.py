"""`--push_to_hub` in training/pretrain.py: the finished model folder, and only it, goes to the Hub in one commit.

The real entry point trains the tiny model on a small synthetic demo and pushes, with no request leaving the machine:
the Hub is an `httpx2.MockTransport` installed with `huggingface_hub.set_client_factory`. It answers the calls of an
upload (create repo, validate the card's YAML, preupload, LFS batch, LFS PUT, commit) and records each of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
import torch
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

from medbind.training.pretrain import main

REPO_ID = "medbind-test/tiny"
TOKEN = "hf_fake"
HUB = "https://huggingface.co"
LFS_STORAGE = "https://lfs-storage.test"
CODE_FILES = {
    "configuration_medbind.py",
    "modeling_medbind.py",
    "losses.py",
    "processing_medbind.py",
    "image_processing_medbind.py",
    "feature_extraction_medbind.py",
    "tokenization_medbind.py",
}
# huggingface_hub fetches this registry (best effort) to name the calling agent in its user agent; not an upload call.
AGENT_REGISTRY = f"{HUB}/api/agent-harnesses"


def upload_mode(sample: str) -> str:
    """The Hub's storage for a file from its base64 first bytes: LFS for binary (a NUL among them), git for text."""
    return "lfs" if b"\0" in base64.b64decode(sample) else "regular"


@dataclass
class HubRequest:
    """One request the fake Hub received: method, URL without the query, Authorization header (None if absent)."""

    method: str
    url: str
    authorization: str | None


@dataclass
class FakeHub:
    """
    A Hub that accepts one model repo's uploads. It records every request, the create-repo payloads, the bytes PUT
    to LFS storage (by sha256), each commit as its parsed NDJSON lines, and any request it has no answer for.
    """

    requests: list[HubRequest] = field(default_factory=list)
    unexpected: list[HubRequest] = field(default_factory=list)
    created: list[dict] = field(default_factory=list)
    lfs_uploads: dict[str, bytes] = field(default_factory=dict)
    commits: list[list[dict]] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one request as the Hub does; a request an upload has no business making fails the test."""
        body = request.read()
        url = f"{request.url.scheme}://{request.url.host}{request.url.path}"
        self.requests.append(HubRequest(request.method, url, request.headers.get("authorization")))
        route = (request.method, url)
        if route == ("GET", AGENT_REGISTRY):
            return httpx2.Response(200, json={"standardEnvVars": [], "harnesses": {}})
        if route == ("POST", f"{HUB}/api/repos/create"):
            self.created.append(json.loads(body))
            return httpx2.Response(200, json={"url": f"{HUB}/{REPO_ID}", "name": REPO_ID})
        if route == ("POST", f"{HUB}/api/validate-yaml"):
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if route == ("POST", f"{HUB}/api/models/{REPO_ID}/preupload/main"):
            answer = [
                {"path": file["path"], "uploadMode": upload_mode(file["sample"]), "shouldIgnore": False}
                for file in json.loads(body)["files"]
            ]
            return httpx2.Response(200, json={"files": answer})
        if route == ("POST", f"{HUB}/{REPO_ID}.git/info/lfs/objects/batch"):
            # No object is stored yet: each gets an upload action (a plain PUT to storage, no verify step).
            objects = json.loads(body)["objects"]
            actions = [{**obj, "actions": {"upload": {"href": f"{LFS_STORAGE}/{obj['oid']}"}}} for obj in objects]
            return httpx2.Response(200, json={"transfer": "basic", "objects": actions})
        if request.method == "PUT" and url.startswith(f"{LFS_STORAGE}/"):
            self.lfs_uploads[request.url.path.removeprefix("/")] = body
            return httpx2.Response(200)
        if route == ("POST", f"{HUB}/api/models/{REPO_ID}/commit/main"):
            self.commits.append([json.loads(line) for line in body.decode().splitlines()])
            oid = f"{len(self.commits):040x}"
            return httpx2.Response(200, json={"commitUrl": f"{HUB}/{REPO_ID}/commit/{oid}", "commitOid": oid})
        # Raised into the caller, and kept: a caller that swallows errors must not hide a stray request.
        self.unexpected.append(self.requests[-1])
        raise AssertionError(f"unexpected Hub request: {request.method} {request.url}")

    def files(self, commit: int = -1) -> dict[str, dict]:
        """`{path_in_repo: {"key": "file" | "lfsFile", **value}}` of one commit's file lines (default: the last)."""
        return {line["value"]["path"]: {"key": line["key"], **line["value"]} for line in self.commits[commit][1:]}

    def content(self, path: str) -> bytes:
        """The bytes the last commit holds at `path`: inline for a git file, the PUT upload for an LFS file."""
        operation = self.files()[path]
        if operation["key"] == "lfsFile":
            return self.lfs_uploads[operation["oid"]]
        return base64.b64decode(operation["content"])


@dataclass
class PushedRun:
    """A pretraining run pushed to the fake Hub: its local output folder, what the Hub received, main()'s metrics."""

    output_dir: Path
    hub: FakeHub
    metrics: dict[str, float]


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory) -> PushedRun:
    """
    `medbind.training.pretrain.main` with `--push_to_hub` on a 40-patient demo (1 epoch, one step of 8) against the fake Hub,
    online as far as huggingface_hub can tell, with its home (token, registry cache) in a temporary folder.
    """
    tmp = tmp_path_factory.mktemp("push")
    hf_home = tmp / "hf_home"
    hub = FakeHub()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "0")
        patch.setenv("HF_HOME", str(hf_home))
        patch.delenv("HF_TOKEN", raising=False)
        # huggingface_hub turns its environment into constants at import: patch those read at request time.
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "HF_HOME", str(hf_home))
        patch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
        patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
        patch.setattr(constants, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json"))
        # With hf_xet installed, LFS content goes through xet's own (Rust) HTTP client, which no Python transport
        # can intercept; without it, huggingface_hub uploads by the LFS batch protocol over its httpx2 client.
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        # The library's request hook stays in: its offline check and request ids are those of a real push.
        hooks = {"request": [hf_request_event_hook]}
        set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub.handle), event_hooks=hooks))
        # Test workers share few cores: with two intra-op threads each, the training step took 10 s instead of 0.5 s.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
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
            set_client_factory(default_client_factory)  # which also closes the mocked client
    return PushedRun(output_dir=tmp / "out", hub=hub, metrics=metrics)


def test_push_creates_the_repo_then_sends_one_commit(pushed_run):
    hub = pushed_run.hub
    assert hub.unexpected == []
    assert hub.created == [{"name": "tiny", "organization": "medbind-test"}]
    upload_calls = [(request.method, request.url) for request in hub.requests if request.url != AGENT_REGISTRY]
    assert upload_calls[0] == ("POST", f"{HUB}/api/repos/create")
    assert len(hub.commits) == 1, [commit[0]["value"]["summary"] for commit in hub.commits]
    assert hub.commits[0][0] == {"key": "header", "value": {"summary": "MedBind pretraining", "description": ""}}


def test_hub_calls_carry_the_token_and_lfs_storage_gets_none(pushed_run):
    requests = [request for request in pushed_run.hub.requests if request.url != AGENT_REGISTRY]
    hub_calls = [request for request in requests if request.url.startswith(HUB)]
    storage_calls = [request for request in requests if request.url.startswith(LFS_STORAGE)]
    assert len(hub_calls) + len(storage_calls) == len(requests)
    assert {request.authorization for request in hub_calls} == {f"Bearer {TOKEN}"}
    assert storage_calls and {request.authorization for request in storage_calls} == {None}


def test_weights_are_sent_as_one_lfs_safetensors_file_with_their_bytes(pushed_run):
    weights = (pushed_run.output_dir / "model.safetensors").read_bytes()
    assert pushed_run.hub.files()["model.safetensors"] == {
        "key": "lfsFile", "path": "model.safetensors", "algo": "sha256",
        "oid": hashlib.sha256(weights).hexdigest(), "size": len(weights),
    }  # fmt: skip
    assert pushed_run.hub.content("model.safetensors") == weights


def test_config_with_auto_map_and_the_remote_code_files_are_sent_as_git_files(pushed_run):
    files = pushed_run.hub.files()
    config = json.loads(pushed_run.hub.content("config.json"))
    assert config["auto_map"] == {
        "AutoConfig": "configuration_medbind.MedBindConfig",
        "AutoModel": "modeling_medbind.MedBindModel",
    }
    assert config["architectures"] == ["MedBindModel"]
    assert {name: files[name]["key"] for name in CODE_FILES if name in files} == dict.fromkeys(CODE_FILES, "file")
    assert b"class MedBindModel" in pushed_run.hub.content("modeling_medbind.py")


def test_processor_and_the_tokenizer_matching_the_model_are_sent(pushed_run):
    processor = json.loads(pushed_run.hub.content("processor_config.json"))
    assert processor["auto_map"] == {"AutoProcessor": "processing_medbind.MedBindProcessor"}
    assert {"image_processor", "feature_extractor"} <= processor.keys()
    assert "tokenizer_config.json" in pushed_run.hub.files()
    vocab = json.loads(pushed_run.hub.content("tokenizer.json"))["model"]["vocab"]
    config = json.loads(pushed_run.hub.content("config.json"))
    assert len(vocab) == config["text_config"]["vocab_size"]


def test_model_card_with_the_results_table_and_synthetic_warning_is_sent_beside_results_json(pushed_run):
    card = pushed_run.hub.content("README.md").decode()
    metadata = card.split("---")[1]
    assert "- synthetic" in metadata and "- medbind" in metadata
    assert "**Trained on SYNTHETIC data.**" in card
    for direction, key in (("CXR -> text", "cxr_to_text"), ("ECG -> text", "ecg_to_text")):
        row = " | ".join(
            f"{pushed_run.metrics[f'{key}/recall@{k}']:.1f} (chance {pushed_run.metrics[f'{key}/chance@{k}']:.1f})"
            for k in (1, 5, 10)
        )
        assert f"| {direction} | {row} |" in card
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card
    assert json.loads(pushed_run.hub.content("results.json")) == pushed_run.metrics


def test_the_files_of_the_output_folder_and_nothing_else_are_sent_byte_for_byte(pushed_run):
    files = pushed_run.hub.files()
    # The run leaves its checkpoint (with optimizer state) in the folder: it must stay local.
    assert list(pushed_run.output_dir.glob("checkpoint-*/optimizer.pt"))
    assert [path for path in files if "/" in path or path.startswith("checkpoint-")] == []
    assert [path for path in files if re.search(r"\.(pt|pth|ckpt)$|^pytorch_model.*\.bin$", path)] == []
    assert files.keys() == {path.name for path in pushed_run.output_dir.iterdir() if path.is_file()}
    for path in files:
        assert pushed_run.hub.content(path) == (pushed_run.output_dir / path).read_bytes(), path


def test_no_pushed_file_holds_the_hub_token(pushed_run):
    # The Hub refuses a commit holding a valid token, and a public repo would publish it.
    leaking = [path for path in pushed_run.hub.files() if TOKEN.encode() in pushed_run.hub.content(path)]
    assert leaking == []
