"""Stands in for llama-server's process behaviour in lifecycle tests: takes its flags, answers
/health with 503 while "loading" (0.3 s), then 200; writes its argv to the log (stdout).
With FITBENCH_STANDIN_IGNORE_TERM=1 it ignores SIGTERM (to test the escalation to SIGKILL)."""

from __future__ import annotations

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ready = time.monotonic() - START > 0.3
        self.send_response(200 if ready else 503)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if ready else b'{"status": "loading"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    if os.environ.get("FITBENCH_STANDIN_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    argv = sys.argv[1:]
    print("standin argv:", " ".join(argv), flush=True)
    port = int(argv[argv.index("--port") + 1])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
