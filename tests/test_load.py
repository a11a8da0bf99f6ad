"""`fitbench load` against a local stand-in server with known latencies and injected failures."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fitbench.cli import main
from fitbench.core.serve.stats import percentile

STANDIN = Path(__file__).with_name("serve_standin.py")
TTFT_MS, ITL_MS = 150.0, 30.0
SECRET = "sk-fitbench-test-0123456789abcdef"

Standin = Callable[[dict[str, Any]], str]


@pytest.fixture
def standin() -> Iterator[Standin]:
    """Starts stand-in servers (own processes); returns a function config -> base URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(config: dict[str, Any]) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(STANDIN), json.dumps(config)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        return f"http://127.0.0.1:{int(proc.stdout.readline())}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _load(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["load", *argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, out + err


def _near(measured: float | None, truth: float, rel: float = 0.10) -> bool:
    return measured is not None and abs(measured - truth) <= rel * truth


def test_latencies_within_10_percent_at_levels_1_4_16(
    standin: Standin, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = standin({"ttft_ms": TTFT_MS, "itl_ms": ITL_MS})
    out = tmp_path / "load.jsonl"
    n_tok = 6
    code, data, _ = _load(
        capsys, "--url", url, "--concurrency", "1,4,16", "--requests", "6",
        "--max-tokens", str(n_tok), "--prompt-tokens", "40", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 4, 16]
    for level in data["levels"]:
        assert set(level) >= {
            "concurrency", "ok", "failed", "ttft_ms", "itl_ms", "e2e_ms",
            "requests_per_s", "output_tokens_per_s",
        }  # fmt: skip
        for key in ("ttft_ms", "itl_ms", "e2e_ms"):
            assert set(level[key]) == {"p50", "p95", "p99"}
        assert (level["ok"], level["failed"]) == (6, 0)
        assert _near(level["ttft_ms"]["p50"], TTFT_MS), level
        assert _near(level["itl_ms"]["p50"], ITL_MS), level
        assert _near(level["e2e_ms"]["p50"], TTFT_MS + (n_tok - 1) * ITL_MS), level
        assert level["output_tokens_per_s_whole"] == pytest.approx(
            level["requests_per_s"] * n_tok, rel=1e-3
        )
        overhead = level["client_overhead"]
        # the client is far from the bottleneck: handling a chunk costs microseconds
        assert overhead["chunk_handling_us"]["mean"] < 0.05 * ITL_MS * 1000
    assert data["model"] == "standin"  # discovered from /v1/models
    assert data["prompt_tokens_method"] == "/tokenize"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["level"]["concurrency"] for rec in lines] == [1, 4, 16]
    assert lines[2]["level"] == data["levels"][2]
    assert lines[0]["url"].endswith("/v1/chat/completions")


def test_users_start_spread_and_throughput_is_rated_while_all_are_active(
    standin: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users of a closed loop start spread over the previous level's e2e time (not in lockstep),
    and the level's throughput is the rate while every user was active: for a server without
    contention that is users x tokens / e2e."""
    url = standin({"ttft_ms": TTFT_MS, "itl_ms": ITL_MS})
    n_tok = 12
    code, data, _ = _load(
        capsys, "--url", url, "--concurrency", "1,4", "--requests", "4",
        "--requests-per-user", "5", "--max-tokens", str(n_tok), "--prompt-tokens", "20",
    )  # fmt: skip
    assert code == 0
    one, four = data["levels"]
    assert one["ramp_s"] == 0.0  # nobody to spread
    assert four["ramp_s"] == pytest.approx(one["e2e_ms"]["p50"] / 1000, rel=1e-3)
    assert four["throughput_window"].startswith("steady: all 4 users active")
    e2e_s = four["e2e_ms"]["p50"] / 1000
    assert _near(four["output_tokens_per_s"], 4 * n_tok / e2e_s, rel=0.15), four
    # the whole level's rate includes the staggered start and the tail: lower
    assert four["output_tokens_per_s_whole"] < four["output_tokens_per_s"]
    code, data, _ = _load(
        capsys, "--url", url, "--concurrency", "4", "--requests", "8", "--ramp-s", "0",
        "--max-tokens", "4", "--prompt-tokens", "20",
    )  # fmt: skip
    assert code == 0 and data["levels"][0]["ramp_s"] == 0.0
    assert data["ramp"] == "0 s"


def test_failures_are_counted_never_fatal(
    standin: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    url = standin({"ttft_ms": 20, "itl_ms": 10, "faults": {"1": "http_500", "2": "break",
                                                           "3": "stall"}})  # fmt: skip
    code, data, _ = _load(
        capsys, "--url", url, "--endpoint", "completions", "--concurrency", "4",
        "--requests", "8", "--max-tokens", "8", "--timeout", "1",
    )  # fmt: skip
    assert code == 0
    (level,) = data["levels"]
    assert (level["ok"], level["failed"]) == (5, 3)
    assert level["errors"] == {"broken_stream": 1, "http_500": 1, "timeout": 1}
    assert data["url"].endswith("/v1/completions")


def test_unreachable_server_fails_every_request_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, data, text = _load(
        capsys, "--url", "http://127.0.0.1:9", "--concurrency", "2", "--requests", "2",
        "--prompt-tokens", "0",
    )  # fmt: skip
    assert code == 1
    assert data["levels"][0]["errors"] == {"connect": 2}
    assert "Traceback" not in text


def test_api_key_is_sent_but_never_logged_printed_or_stored(
    standin: Standin,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    isolated_dirs: Path,
) -> None:
    monkeypatch.setenv("FITBENCH_TEST_KEY", SECRET)
    url = standin({"ttft_ms": 10, "itl_ms": 5, "faults": {"0": "echo_500"}})
    out = tmp_path / "load.jsonl"
    caplog.set_level(logging.DEBUG)
    code = main(
        ["-v", "load", "--url", url, "--api-key-env", "FITBENCH_TEST_KEY", "--concurrency", "1",
         "--requests", "3", "--max-tokens", "3", "--out", str(out)]
    )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    code_json, data, text_json = _load(
        capsys, "--url", url, "--api-key-env", "FITBENCH_TEST_KEY", "--concurrency", "1",
        "--requests", "1", "--max-tokens", "2",
    )  # fmt: skip
    assert code == 0 and code_json == 0
    record = json.loads(out.read_text())
    # the stand-in echoed the Authorization header back: the key reached the server...
    assert "Bearer *" in record["level"]["error_examples"][0]
    assert record["authenticated"] is True
    # ...and nowhere else
    logs = "".join(p.read_text(errors="replace") for p in isolated_dirs.rglob("*.log"))
    for text in (stdout, stderr, out.read_text(), caplog.text, text_json, json.dumps(data), logs):
        assert SECRET[:8] not in text  # not even a cut-off prefix


def test_poisson_arrivals(standin: Standin, capsys: pytest.CaptureFixture[str]) -> None:
    url = standin({"ttft_ms": 20, "itl_ms": 10})
    code, data, _ = _load(
        capsys, "--url", url, "--arrival", "poisson", "--rate", "40", "--concurrency", "4",
        "--requests", "8", "--max-tokens", "4", "--prompt-tokens", "8",
    )  # fmt: skip
    assert code == 0
    assert data["levels"][0]["ok"] == 8
    assert (data["arrival"], data["rate"]) == ("poisson", 40.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--arrival", "poisson"],
        ["--concurrency", "0"],
        ["--concurrency", "a,b"],
        ["--api-key-env", "FITBENCH_UNSET_VARIABLE"],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--url", "http://127.0.0.1:9", *argv]) == 2
    assert "fitbench load:" in capsys.readouterr().err


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile([], 50) is None


def test_levels_are_stored_labelled_with_the_deployment_serve_started(
    standin: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    from fitbench.core.serve.records import read_levels, register_deployment

    url = standin({"ttft_ms": 20, "itl_ms": 5})
    port = int(url.rsplit(":", 1)[1])
    code, _, _ = _load(capsys, "--url", url, "--concurrency", "1", "--requests", "2",
                       "--max-tokens", "3", "--prompt-tokens", "4")  # fmt: skip
    assert code == 0
    (first,) = read_levels()
    assert (first["basis"], first["deployment"]) == ("measured", None)  # nobody said what it runs
    register_deployment(port, {"model_id": "llama-2-70b-chat", "quant": "Q4_K_M",
                               "source": "twin", "parallel": 4})  # fmt: skip
    code, _, _ = _load(capsys, "--url", url, "--concurrency", "2", "--requests", "2",
                       "--max-tokens", "3", "--prompt-tokens", "4",
                       "--requests-per-user", "3")  # fmt: skip
    assert code == 0
    second = read_levels()[1]
    assert second["basis"] == "measured-twin"
    assert second["deployment"]["model_id"] == "llama-2-70b-chat"
    assert second["level"]["ok"] == 6  # 3 per user at 2 users, more than --requests 2
    # in words, each level of a twin's deployment carries the twin's band
    code = main(["load", "--url", url, "--concurrency", "2", "--requests", "2", "--max-tokens",
                 "3", "--prompt-tokens", "4", "--no-store"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and "measured on a twin" in err
    assert out.strip().splitlines()[-1].endswith("[twin: real file ±1%]"), out
    code, _, _ = _load(capsys, "--url", url, "--concurrency", "1", "--requests", "1",
                       "--max-tokens", "2", "--no-store")  # fmt: skip
    assert len(read_levels()) == 2


def test_no_prompt_repeats_across_levels_or_runs(
    standin: Standin, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A server's prefix cache must never answer a request: every prompt starts differently."""
    log = tmp_path / "prompts.txt"
    url = standin({"ttft_ms": 5, "itl_ms": 1, "prompt_log": str(log)})
    for _ in range(2):
        code, data, _ = _load(capsys, "--url", url, "--concurrency", "1,2", "--requests", "3",
                              "--max-tokens", "2", "--prompt-tokens", "20")  # fmt: skip
        assert code == 0 and data["prompt_tokens_measured"] == 20
    prompts = log.read_text().splitlines()
    assert len(prompts) == 12
    assert len({" ".join(p.split()[:1]) for p in prompts}) == 12  # distinct from the first word


def test_a_stale_kept_alive_connection_is_retried_not_failed(
    standin: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    url = standin({"ttft_ms": 5, "itl_ms": 1, "faults": {"2": "stale"}})
    code, data, _ = _load(capsys, "--url", url, "--concurrency", "1", "--requests", "4",
                          "--max-tokens", "3")  # fmt: skip
    assert code == 0
    (level,) = data["levels"]
    assert (level["ok"], level["failed"]) == (4, 0)
    assert level["client_overhead"]["stale_connection_retries"] == 1
