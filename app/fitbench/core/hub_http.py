"""Streaming GETs through huggingface_hub's own HTTP session, whatever library it uses.

huggingface_hub's HTTP client changed under FitBench's declared range (huggingface-hub >= 0.34):
`requests` up to 0.36, `httpx` in 1.x, `httpx2` in 2.x. Importing any of them directly makes
one of those versions die with ModuleNotFoundError; asking `get_session()` for its client and
taking the error classes from that client's own package works on all three. Proxies, certificates
and a user's `set_client_factory` come with the session, as for huggingface_hub's own downloads.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from huggingface_hub.errors import OfflineModeIsEnabled

# requests' iter_content hands over whole chunks: a cut connection loses the partial one
_CHUNK = 16 << 10
# huggingface_hub.utils re-exports these without naming them (mypy --strict refuses the import)
_hf_utils: Any = importlib.import_module("huggingface_hub.utils")


def get_session() -> Any:
    """huggingface_hub's shared client: requests.Session, httpx.Client or httpx2.Client."""
    return _hf_utils.get_session()


def build_hf_headers(token: str | bool | None = None) -> dict[str, str]:
    return dict(_hf_utils.build_hf_headers(token=token))


def hf_raise_for_status(response: Any) -> None:
    _hf_utils.hf_raise_for_status(response)


def get_token() -> str | None:
    token = _hf_utils.get_token()
    return str(token) if token else None


class RetryableError(Exception):
    """Raised by callers for a transfer to be retried like a dropped connection."""


def _library() -> str:
    return type(get_session()).__module__.split(".")[0]


def _transport_errors() -> tuple[type[Exception], ...]:
    lib = importlib.import_module(_library())
    if hasattr(lib, "TransportError"):  # httpx, httpx2
        return (lib.TransportError, RetryableError)
    exc = lib.exceptions  # requests: not HTTPError, which HfHubHTTPError subclasses there
    return (
        exc.ConnectionError,
        exc.Timeout,
        exc.ChunkedEncodingError,
        exc.ContentDecodingError,
        RetryableError,
    )


# connection refused, reset, timed out, cut mid-body: the network failed, not the server's answer
TRANSPORT_ERRORS: tuple[type[Exception], ...] = _transport_errors()
# ... or offline mode kept huggingface_hub from asking at all
UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, OfflineModeIsEnabled)


@dataclass
class StreamResponse:
    """The part of a response FitBench reads; `raw` is the library's own (hf_raise_for_status)."""

    status_code: int
    raw: Any
    _chunks: Iterator[bytes]

    def iter_bytes(self) -> Iterator[bytes]:
        return self._chunks


@contextmanager
def stream_get(
    url: str, headers: Mapping[str, str], *, connect_s: float, read_s: float
) -> Iterator[StreamResponse]:
    """GET `url` following redirects, the body streamed; the connection closes on leaving."""
    session: Any = get_session()
    if _library() != "requests":  # httpx / httpx2 Client (requests.Session.stream is a flag)
        lib = importlib.import_module(_library())
        timeout = lib.Timeout(connect_s, read=read_s)
        with session.stream(
            "GET", url, headers=dict(headers), follow_redirects=True, timeout=timeout
        ) as r:
            yield StreamResponse(r.status_code, r, r.iter_bytes())
        return
    r = session.get(  # requests.Session
        url, headers=dict(headers), stream=True, allow_redirects=True, timeout=(connect_s, read_s)
    )
    try:
        yield StreamResponse(r.status_code, r, r.iter_content(_CHUNK))
    finally:
        r.close()


def offline_mode() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (once, at import) or as set since."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def unreachable(endpoint: str, exc: BaseException) -> str:
    """Why the Hub was not asked: offline mode (and how to leave it), or the network failed."""
    if isinstance(exc, OfflineModeIsEnabled) or offline_mode():
        return (
            f"offline mode is on (HF_HUB_OFFLINE=1), so {endpoint} was not asked; unset "
            "HF_HUB_OFFLINE (or set HF_HUB_OFFLINE=0) to go online"
        )
    return f"cannot reach {endpoint} ({type(exc).__name__})"
