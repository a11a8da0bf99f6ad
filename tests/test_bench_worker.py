"""The benchmark worker, run for real (a child process with llama.cpp) on tiny twins."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fitbench.core.bench.config import BenchConfig, BenchTest, standard_tests
from fitbench.core.bench.worker import MARK, WorkerExit
from fitbench.core.results.schema import LLAMA_BENCH_FIELDS, validate
from fitbench.core.twin.writer import manifest_from_gguf


def run_worker(
    tmp_path: Path, cfg: BenchConfig
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], str]:
    """(exit code, records from stdout, progress events from stderr, other stderr)."""
    path = tmp_path / f"{cfg.config_id}.json"
    path.write_text(cfg.to_json())
    proc = subprocess.run(
        [sys.executable, "-m", "fitbench.core.bench.worker", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    events = [json.loads(ln[len(MARK) :]) for ln in proc.stderr.splitlines() if ln.startswith(MARK)]
    other = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.startswith(MARK))
    return proc.returncode, records, events, other


def config(path: Path, tests: tuple[BenchTest, ...], **kw: Any) -> BenchConfig:
    kw.setdefault("reps", 2)
    kw.setdefault("n_threads", 2)
    kw.setdefault("repack", False)  # AMX buffers crash on some VMs; the runner test covers that
    return BenchConfig(model_path=str(path), tests=tests, source="twin", quant="Q4_K_M", **kw)


def test_pp_and_tg_records_follow_llama_bench(tmp_path: Path, tiny_dense_twin: Path) -> None:
    cfg = config(tiny_dense_twin, standard_tests([32], [8]), model_id="tiny-dense")
    rc, records, events, stderr = run_worker(tmp_path, cfg)
    assert rc == 0, stderr
    # warm and rep are the runner's heartbeat: one warm-up and two repetitions per test, and
    # once more after a `rerun` (repetitions that disagree: a busy machine disturbed them)
    beats = [e for e in events if e["event"] in ("warm", "rep")]
    reruns = sum(e["event"] == "rerun" for e in events)
    assert [e["event"] for e in beats] == ["warm", "rep", "rep"] * (2 + reruns)
    assert all(e["ns"] > 0 and e["tokens"] > 0 for e in beats)
    assert [e["event"] for e in events if e not in beats and e["event"] != "rerun"] == [
        "loading",
        "loaded",
        "test_start",
        "test_end",
        "test_start",
        "test_end",
    ]
    pp, tg = (validate(r) for r in records)
    for rec in (pp, tg):
        assert set(LLAMA_BENCH_FIELDS) <= set(rec)
        assert rec["status"] == "ok" and rec["error"] == ""
        assert len(rec["samples_ns"]) == 2 and len(rec["samples_ts"]) == 2
        assert rec["avg_ts"] > 0 and rec["avg_ns"] > 0
        assert rec["model_id"] == "tiny-dense" and rec["source"] == "twin"
        assert "Q4_K" in rec["model_type"] and rec["model_size"] > 0
        assert rec["n_threads"] == 2 and rec["n_layer_file"] == 4
        assert rec["config_id"] == cfg.config_id and rec["load_s"] > 0
        assert rec["llama_cpp_python_version"]
    assert (pp["test"], pp["n_prompt"], pp["n_gen"]) == ("pp", 32, 0)
    assert (tg["test"], tg["n_prompt"], tg["n_gen"]) == ("tg", 0, 8)
    # avg_ts is the mean of the per-repetition speeds, as llama-bench computes it
    assert abs(tg["avg_ts"] - sum(tg["samples_ts"]) / 2) < 1e-6
    assert abs(tg["samples_ts"][0] - 8e9 / tg["samples_ns"][0]) < 1e-6
    assert pp["ttft_ms"] is not None and pp["itl_ms_p50"] is None
    assert tg["itl_ms_p50"] is not None and tg["ttft_ms"] is None
    assert tg["itl_ms_p50"] <= tg["itl_ms_p95"] <= tg["itl_ms_p99"]
    assert tg["buffer_bytes"]["model"] and tg["buffer_bytes"]["kv"]


def test_batch_depth_and_ttft_tests(tmp_path: Path, tiny_moe_twin: Path) -> None:
    tests = (
        BenchTest("batch", n_gen=4, n_parallel=4),
        BenchTest("tg", n_gen=4, n_depth=16),
        BenchTest("ttft", n_prompt=16, n_gen=4),
    )
    rc, records, _, stderr = run_worker(tmp_path, config(tiny_moe_twin, tests, reps=1))
    assert rc == 0, stderr
    batch, depth, ttft = records
    assert (batch["test"], batch["n_parallel"], batch["n_gen"]) == ("batch", 4, 4)
    # aggregate throughput: all 16 tokens of the 4 sequences
    assert abs(batch["avg_ts"] - 16e9 / batch["samples_ns"][0]) < 1e-6
    assert (depth["test"], depth["n_depth"], depth["n_gen"]) == ("depth", 16, 4)
    assert depth["status"] == "ok"
    assert ttft["test"] == "ttft" and ttft["ttft_ms"] > 0 and ttft["itl_ms_p99"] > 0
    assert ttft["ttft_ms"] * 1e6 < ttft["samples_ns"][0]  # first token before the last one


def _expert_tensors(path: Path, layers: range | None = None) -> dict[str, int]:
    manifest = manifest_from_gguf(path)
    return {
        t.name: t.n_bytes
        for t in manifest.tensors
        if t.is_expert and (layers is None or t.layer in layers)
    }


def test_expert_offload_puts_exactly_the_expert_tensors_on_the_cpu(
    tmp_path: Path, tiny_moe_twin: Path
) -> None:
    """llama.cpp's load log names every tensor whose buffer type the override changed."""
    tg = (BenchTest("tg", n_gen=2),)
    experts = _expert_tensors(tiny_moe_twin)
    assert len(experts) == 12  # 4 layers x gate/up/down

    _, all_recs, all_events, _ = run_worker(
        tmp_path, config(tiny_moe_twin, tg, n_cpu_moe=-1, reps=1)
    )
    loaded = next(e for e in all_events if e["event"] == "loaded")
    assert sorted(loaded["overridden"]) == sorted(experts)
    assert all_recs[0]["n_cpu_moe"] == 4  # every layer
    assert "exps=CPU" in all_recs[0]["tensor_buft_overrides"]

    _, one_recs, one_events, _ = run_worker(
        tmp_path, config(tiny_moe_twin, tg, n_cpu_moe=1, reps=1)
    )
    loaded = next(e for e in one_events if e["event"] == "loaded")
    assert sorted(loaded["overridden"]) == sorted(_expert_tensors(tiny_moe_twin, range(1)))
    assert one_recs[0]["n_cpu_moe"] == 1

    _, none_recs, none_events, _ = run_worker(tmp_path, config(tiny_moe_twin, tg, reps=1))
    assert next(e for e in none_events if e["event"] == "loaded")["overridden"] == []
    assert none_recs[0]["tensor_buft_overrides"] == "none"


def test_dense_model_has_no_experts_to_move(tmp_path: Path, tiny_dense_twin: Path) -> None:
    cfg = config(tiny_dense_twin, (BenchTest("tg", n_gen=2),), n_cpu_moe=-1, reps=1)
    rc, records, events, _ = run_worker(tmp_path, cfg)
    assert rc == 0
    assert next(e for e in events if e["event"] == "loaded")["overridden"] == []
    assert records[0]["n_cpu_moe"] == 0


def test_unloadable_file_gives_a_failure_record_per_test(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    rc, records, _, _ = run_worker(tmp_path, config(bad, standard_tests([8], [4]), reps=1))
    assert rc == 3
    assert [r["status"] for r in records] == ["error", "error"]
    assert all("broken.gguf" in r["error"] for r in records)
    assert [r["test"] for r in records] == ["pp", "tg"]


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text('{"tests": []}')
    proc = subprocess.run(
        [sys.executable, "-m", "fitbench.core.bench.worker", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "fitbench worker: not a benchmark config" in proc.stderr
    assert "Traceback" not in proc.stderr


def _gpu_offload() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@pytest.mark.skipif(not _gpu_offload(), reason="needs a GPU build of llama-cpp-python and a GPU")
def test_expert_offload_moves_the_expert_bytes_from_gpu_to_cpu_buffers(
    tmp_path: Path, tiny_moe_twin: Path
) -> None:
    """llama.cpp's own buffer sizes: with all experts on the CPU, the GPU model buffer shrinks
    and the host buffers grow by the bytes of the expert tensors."""
    tg = (BenchTest("tg", n_gen=2),)
    expert_bytes = sum(_expert_tensors(tiny_moe_twin).values())
    buffers = {}
    for ncmoe in (0, -1):
        rc, recs, _, err = run_worker(tmp_path, config(tiny_moe_twin, tg, n_cpu_moe=ncmoe, reps=1))
        assert rc == 0, err
        buffers[ncmoe] = recs[0]["buffer_bytes"]["model"]

    def is_host(name: str) -> bool:  # CPU, CPU_Mapped, CUDA_Host (pinned host memory)
        return name.startswith("CPU") or "host" in name.lower()

    def host(b: dict[str, int]) -> int:
        return sum(v for k, v in b.items() if is_host(k))

    def gpu(b: dict[str, int]) -> int:
        return sum(v for k, v in b.items() if not is_host(k))

    tolerance = 0.02 * expert_bytes + 64 * 1024  # the log rounds to 0.01 MiB per buffer
    assert abs(host(buffers[-1]) - host(buffers[0]) - expert_bytes) < tolerance
    assert abs(gpu(buffers[0]) - gpu(buffers[-1]) - expert_bytes) < tolerance


@pytest.mark.parametrize(
    ("outcome", "status", "words"),
    [
        (
            WorkerExit(-signal.SIGKILL, "tg4"),
            "killed",
            "killed (SIGKILL) during tg4 with no sign of memory pressure",
        ),
        (
            WorkerExit(-signal.SIGKILL, "tg4", oom_evidence="the cgroup's OOM-kill counter went"),
            "oom",
            "killed (SIGKILL) during tg4 by the out-of-memory killer (the cgroup's",
        ),
        (
            WorkerExit(-signal.SIGKILL, "tg4", timeout_s=60.0, stopped=True),
            "timeout",
            "nothing happened for 60 s (waiting for tg4 to finish): the worker process was stopped",
        ),
        (
            WorkerExit(-signal.SIGSEGV, "tg4", "ggml.c:12"),
            "crash",
            "crashed (SIGSEGV) during tg4\nggml",
        ),
        (
            WorkerExit(-signal.SIGABRT, "", "CUDA error: out of memory"),
            "oom",
            "crashed (SIGABRT)\n",
        ),
        (WorkerExit(-signal.SIGABRT, "", "GGML_ASSERT"), "crash", "crashed (SIGABRT)\nGGML_ASSERT"),
        (WorkerExit(1, "pp16", "failed to allocate"), "oom", "exited with code 1 during pp16\n"),
        (WorkerExit(1), "error", "the worker exited with code 1"),
        (
            WorkerExit(-signal.SIGKILL, "tg4", timeout_s=5.0),
            "timeout",
            "nothing happened for 5 s (waiting for tg4 to finish)",
        ),
        (WorkerExit(-signal.SIGTERM, timeout_s=5.0), "timeout", "(waiting for the model to load)"),
        (WorkerExit(-signal.SIGTERM, "tg4", cancelled=True), "cancelled", "cancelled by the user"),
    ],
)
def test_a_worker_exit_is_one_outcome_with_a_status_and_words(
    outcome: WorkerExit, status: str, words: str
) -> None:
    assert outcome.status == status
    assert outcome.description.startswith(words) or words in outcome.description
    assert str(outcome) == outcome.description
    assert not outcome.was_successful


def test_exit_codes_and_signals_are_told_apart() -> None:
    ok = WorkerExit(0)
    assert ok.was_successful and ok.exit_code == 0 and ok.signal is None and not ok.crashed
    segv = WorkerExit(-signal.SIGSEGV)
    assert segv.signal == signal.SIGSEGV and segv.exit_code is None and segv.crashed
    assert segv.signal_name == "SIGSEGV"
    assert not WorkerExit(-signal.SIGKILL).crashed  # stopped from outside, not a crash
    assert not WorkerExit(-signal.SIGSEGV, timeout_s=1.0).crashed
    assert not WorkerExit(0, cancelled=True).was_successful
