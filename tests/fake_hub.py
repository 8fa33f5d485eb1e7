"""A fake Hugging Face Hub for upload tests: it answers huggingface_hub's upload calls and records what they send."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

REPO_ID = "medbind-test/tiny"
TOKEN = "hf_fake"
HUB = "https://huggingface.co"
LFS_STORAGE = "https://lfs-storage.test"
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
            answer = [{"path": file["path"], "uploadMode": upload_mode(file["sample"]), "shouldIgnore": False}
                      for file in json.loads(body)["files"]]  # fmt: skip
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


@contextmanager
def serving(hub: FakeHub, hf_home: Path) -> Iterator[pytest.MonkeyPatch]:
    """
    huggingface_hub online as far as it can tell, its every request answered by `hub`, its home (token, registry
    cache) in `hf_home`; yields the MonkeyPatch for the caller's own patches, all undone on exit.
    """
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
        try:
            yield patch
        finally:
            set_client_factory(default_client_factory)  # which also closes the mocked client
