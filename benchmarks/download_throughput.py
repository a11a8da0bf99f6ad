"""Download throughput and resume cost against the local Hub server (tests/hub_server.py).

    .venv/bin/python benchmarks/download_throughput.py [--mb 512] [--runs 3]

Measures, on the same file served by the same local server:
- a plain HTTP client (httpx2 streaming GET of the CDN URL, written to disk), the reference;
- fitbench.core.download.hub.download_file (HEAD + GET + inline SHA-256 + fsync + cache linking);
- the extra bytes after a resume: connection dropped at 50% (resumed in the same call), and a
  cancel at ~50% followed by a new call (as after an app restart).
Runs alternate between the two clients; medians are reported. Numbers are measured, on this
machine, over loopback: they bound FitBench's own overhead, not a real network's speed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx2

from hub_server import HubServer

REPO = "bench/throughput-GGUF"
NAME = "payload.gguf"


def _make_payload(path: Path, mb: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        for _ in range(mb):
            fh.write(block)


def _plain(url: str, out: Path, hash_it: bool = False) -> float:
    h = hashlib.sha256() if hash_it else None
    t0 = time.perf_counter()
    with httpx2.stream("GET", url, timeout=60) as r, out.open("wb") as fh:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            fh.write(chunk)
            if h is not None:
                h.update(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    dt = time.perf_counter() - t0
    out.unlink()
    return dt


def _fitbench(hf_home: Path) -> float:
    from fitbench.core.download import hub as download

    t0 = time.perf_counter()
    result = download.download_file(REPO, NAME, check_compat=False)
    dt = time.perf_counter() - t0
    assert result.verified
    _clear(hf_home)
    return dt


def _clear(hf_home: Path) -> None:
    import shutil

    shutil.rmtree(hf_home / "hub", ignore_errors=True)
    shutil.rmtree(Path(os.environ["FITBENCH_HOME"]) / "cache" / "verified", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="payload size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fitbench-dl-bench-") as tmp_name:
        tmp = Path(tmp_name)
        hf_home = tmp / "hf"
        os.environ.update(
            HF_HOME=str(hf_home),
            FITBENCH_HOME=str(tmp / "fitbench"),
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        os.environ.pop("HF_TOKEN", None)
        payload = tmp / NAME
        _make_payload(payload, args.mb)
        server = HubServer()
        try:
            os.environ["HF_ENDPOINT"] = server.url
            f = server.add_file(REPO, NAME, payload)
            cdn = f"{server.cdn_url}/cdn/{f.sha256}/{NAME}"
            size = f.size
            _plain(cdn, tmp / "warm")  # page cache and connection warm-up
            print(f"payload: {size / 1e6:.1f} MB, {args.runs} alternated runs, medians")
            for label, rate in (("loopback, unthrottled", None), ("throttled to 100 MB/s", 1e8)):
                server.throttle_bytes_per_s = rate
                plain, plain_hash, fit = [], [], []
                for _ in range(args.runs):
                    plain.append(_plain(cdn, tmp / "plain.out"))
                    plain_hash.append(_plain(cdn, tmp / "plain.out", hash_it=True))
                    fit.append(_fitbench(hf_home))
                base = size / 1e6 / statistics.median(plain)
                print(f"-- {label}")
                for name, times in (
                    ("plain httpx2 -> disk", plain),
                    ("plain httpx2 -> disk + SHA-256", plain_hash),
                    ("fitbench download_file (verified)", fit),
                ):
                    rate_mb = size / 1e6 / statistics.median(times)
                    print(
                        f"{name:34s} {rate_mb:8.1f} MB/s  {100 * (rate_mb / base - 1):+6.1f}% "
                        f"vs plain  (runs: {_fmt(times)})"
                    )
            server.throttle_bytes_per_s = None
            _resume_costs(server, hf_home, size)
        finally:
            server.close()
    return 0


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}s" for t in times)


def _resume_costs(server: HubServer, hf_home: Path, size: int) -> None:
    from fitbench.core.download import hub as download

    # 1) connection dropped mid-file: resumed inside the same call with a Range request
    server.reset_counters()
    server.drop_connection_after(size // 2)
    download.download_file(REPO, NAME, check_compat=False)
    extra = server.bytes_served - size
    print(f"dropped at 50%, resumed in-call: {extra} extra bytes ({100 * extra / size:.4f}%)")
    _clear(hf_home)
    # 2) cancelled at ~50%, then a new call (as after a restart of the app)
    server.reset_counters()
    cancel = threading.Event()

    def on_progress(p: download.Progress) -> None:
        if p.phase == "download" and p.done >= size // 2:
            cancel.set()

    with contextlib.suppress(download.DownloadCancelled):
        download.download_file(REPO, NAME, check_compat=False, progress=on_progress, cancel=cancel)
    result = download.download_file(REPO, NAME, check_compat=False)
    extra = server.bytes_served - size
    in_flight = server.bytes_served - size
    print(
        f"cancelled at {result.resumed_from / size:.0%}, resumed by a new call: 0 bytes requested "
        f"twice (Range starts at the kept {result.resumed_from} bytes); the server had written "
        f"{in_flight} bytes ({100 * in_flight / size:.2f}%) into socket buffers that the "
        "cancelled client never read"
    )
    _clear(hf_home)


if __name__ == "__main__":
    raise SystemExit(main())
