"""Fixtures that start a local Hub-compatible HTTP server (owned by the download tests).

`hub_server` starts tests/hub_server.HubServer on 127.0.0.1 (two ephemeral ports: the "hub" and an
LFS "cdn" that the hub redirects to), points huggingface_hub at it and yields the server:

    def test_x(hub_server):
        f = hub_server.add_file("org/repo", "m.Q4_K_M.gguf", path_or_bytes)  # -> HubFile
        hf_hub_download("org/repo", "m.Q4_K_M.gguf")     # goes to the local server
        hub_server.url                      # endpoint, also in $HF_ENDPOINT
        hub_server.commit("org/repo")       # the 40-hex commit the server reports for "main"
        f.sha256, f.size, f.bytes_served, f.gets
        hub_server.bytes_served             # body bytes of file content sent, all files
        hub_server.requests   # [RequestLog(method, path, range, authorized, status, body_bytes)]
        hub_server.drop_connection_after(n_bytes, times=1)  # next GET(s) cut after n body bytes
        hub_server.throttle_bytes_per_s = 2e6               # slow every GET down (cancel tests)
        f.corrupt = True                    # serve flipped bytes; headers keep the true sha256
        hub_server.add_file(..., private=True) / gated=True   # 401 unless a token below is sent
        hub_server.tokens.add("hf_...")     # tokens the server accepts (Authorization: Bearer)
        hub_server.reset_counters()

Remote header readers (core/gguf.py): GET {url}/{repo}/resolve/{rev}/{file} with a Range header
follows a 302 to the cdn, which answers 206 + Content-Range; HEAD gives X-Linked-Size.

The fixture sets, for this test only: $HF_ENDPOINT, huggingface_hub.constants.ENDPOINT and
HUGGINGFACE_CO_URL_TEMPLATE (both are read at import time), and points the constants
HF_HUB_CACHE / HF_TOKEN_PATH / HF_STORED_TOKENS_PATH into this test's $HF_HOME (conftest sets it),
so no real token or cache of the developer is ever read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import HubFile, HubServer, RequestLog

__all__ = ["HubFile", "HubServer", "RequestLog", "hub_server"]


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    from huggingface_hub import constants

    server = HubServer()
    hf_home = Path(os.environ["HF_HOME"])
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    from huggingface_hub import file_download

    if hasattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):  # hub < 1 copied it at import
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    try:
        yield server
    finally:
        server.close()
