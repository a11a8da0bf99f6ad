"""A stand-in OpenAI-compatible streaming server with known latencies and injected failures.

Run as a script (a separate process, so its timing does not share the GIL with the client):
    python tests/serve_standin.py '{"ttft_ms": 50, "itl_ms": 20, "faults": {"3": "http_500"}}'
It prints its port on the first line of stdout, then serves until killed. Only the stdlib.
Started with llama-server's flags instead (`... --port P ...`), it listens on P, answers
/health, and reads its config from $FITBENCH_STANDIN_CONFIG: a stand-in for `fitbench serve`.

Tokens are sent at absolute times start + ttft + k * itl, so the true TTFT and ITL are exact on
average whatever each write costs. faults maps a request's arrival index (0-based, as a string)
or "every_N" to one of: http_500, echo_500 (a 500 whose body echoes the request headers), break
(closes the stream half-way without [DONE]), stall (stops sending mid-stream), stale (closes the
connection without a reply, as a server closing a kept-alive connection does).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any


class StandIn:
    def __init__(self, config: dict[str, Any]) -> None:
        self.ttft = float(config.get("ttft_ms", 50)) / 1000.0
        self.itl = float(config.get("itl_ms", 20)) / 1000.0
        self.faults: dict[str, str] = dict(config.get("faults", {}))
        self.prompt_log = str(config.get("prompt_log", ""))  # append every prompt to this file
        self.count = 0

    def fault_for(self, index: int) -> str:
        if str(index) in self.faults:
            return self.faults[str(index)]
        for key, fault in self.faults.items():
            if key.startswith("every_") and (index + 1) % int(key[6:]) == 0:
                return fault
        return ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        start_line = await reader.readline()
        if not start_line:
            return False
        start = time.perf_counter()
        method, path, _ = start_line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if path == "/tokenize":
            content = json.loads(body)["content"]
            tokens = list(range(len(content.split())))
            return self.reply(writer, 200, json.dumps({"tokens": tokens}).encode())
        if path == "/health":
            return self.reply(writer, 200, b'{"status": "ok"}')
        if path == "/v1/models":
            return self.reply(writer, 200, b'{"data": [{"id": "standin"}]}')
        if method != "POST" or not path.startswith("/v1/"):
            return self.reply(writer, 404, b'{"error": "not found"}')
        index, self.count = self.count, self.count + 1
        fault = self.fault_for(index)
        if fault == "http_500":
            return self.reply(writer, 500, b'{"error": "injected"}')
        if fault == "echo_500":
            return self.reply(writer, 500, json.dumps({"headers": headers}).encode())
        if fault == "stale":  # a kept-alive connection closed as the request arrives: no reply
            return False
        request = json.loads(body)
        if self.prompt_log:
            text = request.get("prompt") or request["messages"][-1]["content"]
            with open(self.prompt_log, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")
        chat = path.endswith("/chat/completions")
        n = int(request.get("max_tokens", 16))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for k in range(n):
            await asyncio.sleep(max(0.0, start + self.ttft + k * self.itl - time.perf_counter()))
            if fault == "break" and k == n // 2:
                writer.transport.abort()  # mid-stream, no terminating chunk
                return False
            if fault == "stall" and k == n // 2:
                await asyncio.sleep(3600)
            piece = {"delta": {"content": f" t{k}"}} if chat else {"text": f" t{k}"}
            self.chunk(writer, {"choices": [{"index": 0, **piece}]})
            await writer.drain()
        self.chunk(writer, {"choices": [], "usage": {"completion_tokens": n}})
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        await writer.drain()
        return True

    @staticmethod
    def chunk(writer: asyncio.StreamWriter, event: dict[str, Any]) -> None:
        data = b"data: " + json.dumps(event).encode() + b"\n\n"
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    @staticmethod
    def reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> bool:
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        return True


async def main(config: dict[str, Any], port: int = 0) -> None:
    standin = StandIn(config)
    server = await asyncio.start_server(standin.handle, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if "--port" in sys.argv:  # started as llama-server would be: its flags, config from the env
        port = int(sys.argv[sys.argv.index("--port") + 1])
        asyncio.run(main(json.loads(os.environ.get("FITBENCH_STANDIN_CONFIG", "{}")), port))
    else:
        asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
