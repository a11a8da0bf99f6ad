"""One streamed request to an OpenAI-compatible endpoint, timed token by token.

HTTP client: httpx2 (the maintained httpx line), with asyncio. Why: FitBench already depends on it
at run time (huggingface-hub 2.x and core.download use it), so the load generator adds no package
and no compiled extension to the desktop build, and it streams response bytes as they arrive
(aiter_bytes). aiohttp is a little faster per request under very high concurrency, but it would be
a second HTTP stack with C extensions for the same job. Whether the client keeps up is not assumed
but measured: the time to handle each chunk, the event loop's wake-up lag and the client's CPU
share are reported next to the latencies (stats.ClientOverhead).

SSE is parsed here (a line scan of `data:` events) rather than by a library: it is the hot path,
and each chunk's arrival time is taken before any parsing so parsing cannot inflate the latency.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx2

from fitbench.core.serve.stats import ClientOverhead, RequestResult

_MAX_DETAIL = 200
# h11's words for a connection that closed before any byte of the response (a stale keep-alive)
_STALE = "without sending a response"


@dataclass(frozen=True)
class Endpoint:
    """Where and how requests go. api_key is held only in memory: redact() removes it from any
    text that might leave this module (error bodies echoed by a server, exception messages)."""

    base_url: str  # e.g. http://127.0.0.1:8080 (a trailing /v1 is accepted too)
    kind: str = "chat"  # chat -> /v1/chat/completions, completions -> /v1/completions
    model: str = ""
    api_key: str = ""
    ignore_eos: bool = True  # generate max_tokens every time (llama-server, vLLM honour it)

    def url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        path = "/v1/chat/completions" if self.kind == "chat" else "/v1/completions"
        return base + path

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def body(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.0,
        }
        if self.kind == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.model:
            body["model"] = self.model
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text


async def stream_request(
    client: httpx2.AsyncClient,
    endpoint: Endpoint,
    prompt: str,
    max_tokens: int,
    overhead: ClientOverhead,
) -> RequestResult:
    """Send one request and time every content chunk; every failure becomes result.error."""
    result = RequestResult(start=time.perf_counter())

    async def trace(name: str, info: dict[str, Any]) -> None:
        # the moment the request's bytes go out: latencies start here, not when this coroutine
        # started, so time spent queued in a busy client is reported as overhead, not as TTFT
        if name.endswith("send_request_headers.started"):
            result.sent = time.perf_counter()

    for attempt in range(2):
        try:
            async with client.stream(
                "POST",
                endpoint.url(),
                json=endpoint.body(prompt, max_tokens),
                headers=endpoint.headers(),
                extensions={"trace": trace},
            ) as response:
                if response.status_code != 200:
                    # redact the whole body before cutting it: a cut key would slip past redact()
                    body = endpoint.redact((await response.aread()).decode("utf-8", "replace"))
                    result.error = f"http_{response.status_code}"
                    result.detail = body.strip()[:_MAX_DETAIL]
                else:
                    await _read_events(response, result, overhead)
        except httpx2.RemoteProtocolError as exc:
            if attempt == 0 and _STALE in str(exc) and not result.token_times:
                # a kept-alive connection the server closed as this request went out: it never
                # reached the server (no byte came back), so it is sent again on a fresh one
                overhead.stale_retries += 1
                continue
            result.error, result.detail = "broken_stream", str(exc)
        except httpx2.TimeoutException:
            result.error, result.detail = "timeout", "no data within the timeout"
        except httpx2.ReadError as exc:
            result.error, result.detail = "broken_stream", str(exc)
        except httpx2.ConnectError as exc:
            result.error, result.detail = "connect", str(exc)
        except httpx2.HTTPError as exc:
            result.error, result.detail = "http_error", f"{type(exc).__name__}: {exc}"
        break
    result.end = time.perf_counter()
    overhead.send_delay_s.append(result.sent - result.start if result.sent else 0.0)
    result.detail = endpoint.redact(result.detail)[:_MAX_DETAIL]
    return result


async def _read_events(
    response: httpx2.Response, result: RequestResult, overhead: ClientOverhead
) -> None:
    pending = b""
    done = False
    usage_tokens: int | None = None
    async for chunk in response.aiter_bytes():
        arrived = time.perf_counter()
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            event = _loads(data)
            if event is None:
                continue
            if "error" in event:
                result.error, result.detail = "server_error", str(event["error"])
                return
            if _has_text(event):
                result.token_times.append(arrived)
            usage = event.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                usage_tokens = usage["completion_tokens"]
        overhead.chunk_handling_s.append(time.perf_counter() - arrived)
    if not done:
        result.error, result.detail = "broken_stream", "stream ended before [DONE]"
        return
    if not result.token_times:
        result.error, result.detail = "no_tokens", "the stream carried no output text"
        return
    result.output_tokens = usage_tokens if usage_tokens is not None else len(result.token_times)


def _loads(data: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _has_text(event: dict[str, Any]) -> bool:
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        # reasoning models stream their thinking first: it is output the user waits through
        return bool(delta.get("content") or delta.get("reasoning_content"))
    return bool(choice.get("text"))
