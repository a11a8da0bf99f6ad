"""The sweep runner with real workers: crashes and kills are outcomes, cancel, persistence."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from fitbench.core.bench import events as ev
from fitbench.core.bench.config import INJECT_ENV, BenchConfig, BenchTest
from fitbench.core.bench.runner import run_sweep
from fitbench.core.results.schema import FIELD_NAMES, part_fields, read_jsonl
from fitbench.core.results.store import open_store
from gui_helpers import bench_workers

TESTS = (BenchTest("pp", n_prompt=16), BenchTest("tg", n_gen=4))


@pytest.fixture(autouse=True)
def _allow_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INJECT_ENV, "1")


def cfg(path: Path, inject: str = "", **kw: Any) -> BenchConfig:
    kw.setdefault("repack", False)
    return BenchConfig(
        model_path=str(path),
        tests=TESTS,
        reps=1,
        n_threads=2,
        source="twin",
        inject=inject,
        **kw,
    )


def test_sweep_survives_a_segfault_and_a_sigkill(tmp_path: Path, tiny_dense_twin: Path) -> None:
    configs = [
        cfg(tiny_dense_twin, n_gpu_layers=0),
        cfg(tiny_dense_twin, "segfault@test1", n_gpu_layers=1),
        cfg(tiny_dense_twin, "sleep@test1", n_gpu_layers=2),
        cfg(tiny_dense_twin, n_gpu_layers=3),
    ]
    out = tmp_path / "out.jsonl"
    store = open_store()
    seen: list[ev.Event] = []
    for event in run_sweep(configs, store=store, out_jsonl=out):
        seen.append(event)
        if isinstance(event, ev.RecordReady):
            # committed before the event (and before the worker was told to go on)
            db = sqlite3.connect(store.path)
            n = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            assert n == sum(isinstance(e, ev.RecordReady) for e in seen)
            db.close()
            rec = event.record
            if rec["config_id"] == configs[2].config_id and rec["test"] == "pp":
                (victim,) = bench_workers()  # sleeping in test 1, killed by someone
                os.kill(victim.pid, signal.SIGKILL)
    records = store.records()
    by_config = {
        c.config_id: [r for r in records if r["config_id"] == c.config_id] for c in configs
    }
    assert [r["status"] for r in by_config[configs[0].config_id]] == ["ok", "ok"]
    crashed = by_config[configs[1].config_id]
    assert [r["status"] for r in crashed] == ["ok", "crash"]
    assert "SIGSEGV" in crashed[1]["error"] and "tg4" in crashed[1]["error"]
    killed = by_config[configs[2].config_id]
    # a SIGKILL without evidence of memory pressure is not an OOM (issue 21, item 5)
    assert [r["status"] for r in killed] == ["ok", "killed"]
    assert "SIGKILL" in killed[1]["error"] and "no sign of memory pressure" in killed[1]["error"]
    assert [r["status"] for r in by_config[configs[3].config_id]] == ["ok", "ok"]

    failed = [e for e in seen if isinstance(e, ev.ConfigFailed)]
    assert [(f.config_id, f.status) for f in failed] == [
        (configs[1].config_id, "crash"),
        (configs[2].config_id, "killed"),
    ]
    (finished,) = [e for e in seen if isinstance(e, ev.SweepFinished)]
    assert (finished.n_records, finished.n_failed, finished.cancelled) == (8, 2, False)
    assert len(read_jsonl(out)) == 8
    run = store.list_runs()[0]
    assert run.status == "finished" and run.n_records == 8
    assert all(r["run_id"] == run.run_id for r in records)
    # memory was sampled while the workers ran
    samples = [e for e in seen if isinstance(e, ev.Sample)]
    assert samples and all(s.ram_bytes > 0 for s in samples)
    assert all(r["ram_peak_bytes"] > 10_000_000 for r in records if r["status"] == "ok")
    assert not bench_workers()


@pytest.mark.parametrize("inject", ["sleep@test0", "hang@test0"])
def test_cancel_stops_the_worker_and_the_sweep(tiny_dense_twin: Path, inject: str) -> None:
    """`hang` ignores SIGTERM: the runner has to kill it."""
    cancel = threading.Event()
    configs = [cfg(tiny_dense_twin, inject), cfg(tiny_dense_twin, n_gpu_layers=5)]
    store = open_store()
    seen: list[ev.Event] = []
    pids: list[int] = []
    for event in run_sweep(configs, store=store, cancel=cancel):
        seen.append(event)
        if isinstance(event, ev.Sample) and not cancel.is_set() and bench_workers():
            pids = [p.pid for p in bench_workers()]
            cancel.set()
    assert pids
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in pids)
    (finished,) = [e for e in seen if isinstance(e, ev.SweepFinished)]
    assert finished.cancelled
    started = [e.config_id for e in seen if isinstance(e, ev.ConfigStarted)]
    assert started == [configs[0].config_id]  # the second config never ran
    (failed,) = [e for e in seen if isinstance(e, ev.ConfigFailed)]
    assert failed.status == "cancelled"
    assert [r["status"] for r in store.records()] == ["cancelled"]
    assert store.list_runs()[0].status == "cancelled"


@pytest.mark.parametrize("where", ["test1", "load"])
def test_a_stalled_worker_times_out_and_the_sweep_goes_on(
    tiny_dense_twin: Path, where: str
) -> None:
    """`hang` ignores SIGTERM, as a worker stuck in a driver call would: the runner kills it."""
    configs = [cfg(tiny_dense_twin, f"hang@{where}"), cfg(tiny_dense_twin, n_gpu_layers=1)]
    store = open_store()
    seen = list(run_sweep(configs, store=store, test_timeout_s=5.0))
    by_config = {
        c.config_id: [r for r in store.records() if r["config_id"] == c.config_id] for c in configs
    }
    stalled = by_config[configs[0].config_id]  # 5 s: a loaded CI box still loads within it
    if where == "test1":
        assert [r["status"] for r in stalled] == ["ok", "timeout"]
        assert "nothing happened for 5 s (waiting for tg4 to finish)" in stalled[1]["error"]
        assert "--test-timeout" in stalled[1]["error"]
    else:
        assert [r["status"] for r in stalled] == ["timeout", "timeout"]
        assert "(waiting for the model to load)" in stalled[0]["error"]
        assert stalled[1]["error"] == stalled[0]["error"]  # no test ran without a model
    assert [r["status"] for r in by_config[configs[1].config_id]] == ["ok", "ok"]
    failed = [(e.config_id, e.status) for e in seen if isinstance(e, ev.ConfigFailed)]
    assert failed == [(configs[0].config_id, "timeout")]
    (finished,) = [e for e in seen if isinstance(e, ev.SweepFinished)]
    assert (finished.n_records, finished.n_failed, finished.cancelled) == (4, 1, False)
    assert not bench_workers()


def test_stopping_iteration_leaves_no_worker_behind(tiny_dense_twin: Path) -> None:
    sweep = run_sweep([cfg(tiny_dense_twin, "sleep@test0")], store=open_store())
    for event in sweep:
        if isinstance(event, ev.Sample) and bench_workers():
            break
    pids = [p.pid for p in bench_workers()]
    sweep.close()  # what a GUI does when its job is dropped
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in pids)
    assert open_store().list_runs()[0].status == "interrupted"


def test_repacked_weights_work_or_fall_back(tiny_moe_twin: Path) -> None:
    """llama.cpp's AMX buffers (repack on) crash on AMX VMs; the runner measures without them."""
    store = open_store()
    list(run_sweep([cfg(tiny_moe_twin, repack=True)], store=store))
    recs = store.records()
    assert [r["status"] for r in recs] == ["ok", "ok"]


def test_worker_stops_when_the_runner_process_dies(tiny_dense_twin: Path, tmp_path: Path) -> None:
    """A runner killed without cleanup (SIGKILL of the app) leaves no worker running on."""
    script = tmp_path / "runner.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from fitbench.core.bench.config import BenchConfig, BenchTest\n"
        "from fitbench.core.bench.runner import run_sweep\n"
        "from fitbench.core.results.store import open_store\n"
        f"cfg = BenchConfig(model_path={str(tiny_dense_twin)!r}, tests=(BenchTest('tg', n_gen=2),),"
        " reps=1, repack=False, inject='sleep@test0')\n"
        "for event in run_sweep([cfg], store=open_store()):\n"
        "    if type(event).__name__ == 'Sample':\n"
        "        print('sampling', flush=True)\n"
    )
    runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    assert runner.stdout.readline().strip() == "sampling"
    (worker,) = [
        c
        for c in psutil.Process(runner.pid).children()
        if "fitbench.core.bench.worker" in " ".join(c.cmdline())
    ]
    runner.kill()
    runner.wait()
    runner.stdout.close()
    gone, alive = psutil.wait_procs([worker], timeout=20)
    assert worker in gone and not alive


class _TwoGpus:
    """NVML as the parent sees it on a 2-GPU machine (the worker runs on the CPU build)."""

    def __init__(self) -> None:
        self.calls = 0

    def used(self) -> list[int]:
        self.calls += 1
        return [1 << 30, 2 << 30]

    def close(self) -> None:
        pass


def test_records_keep_the_vram_baseline_of_every_gpu_and_failures_keep_the_split(
    monkeypatch: pytest.MonkeyPatch, tiny_dense_twin: Path
) -> None:
    from fitbench.core.bench import sampler

    monkeypatch.setattr(sampler, "Nvml", _TwoGpus)
    split = cfg(tiny_dense_twin, tensor_split=(0.75, 0.25))
    crashing = cfg(tiny_dense_twin, "segfault@test0", tensor_split=(0.75, 0.25), n_gpu_layers=1)
    store = open_store()
    list(run_sweep([split, crashing], store=store))
    ok, crashed = (
        [r for r in store.records() if r["config_id"] == c.config_id] for c in (split, crashing)
    )
    for rec in ok + crashed:
        assert rec["vram_base_per_gpu"] == [1 << 30, 2 << 30]
        assert rec["vram_base_bytes"] == 3 << 30
        assert rec["tensor_split"] == "0.75/0.25"
    assert [r["status"] for r in ok] == ["ok", "ok"]
    assert ok[0]["vram_peak_per_gpu"] == [1 << 30, 2 << 30]
    assert [r["status"] for r in crashed] == ["crash", "crash"]


def test_finished_and_unfinished_tests_are_recorded_alike(tiny_dense_twin: Path) -> None:
    """The worker records the test it finished and the runner the one it crashed in: the same
    keys, and the same config, build, model and placement values (the placement in effect once
    the model loaded, the request while it never did)."""
    crashing = cfg(tiny_dense_twin, "segfault@test1", n_gpu_layers=-1)
    unloaded = cfg(tiny_dense_twin, "exit@load", n_gpu_layers=-1)
    store = open_store()
    list(run_sweep([crashing, unloaded], store=store))
    by_config = {
        c.config_id: [r for r in store.records() if r["config_id"] == c.config_id]
        for c in (crashing, unloaded)
    }
    ok, crashed = by_config[crashing.config_id]
    assert (ok["status"], crashed["status"]) == ("ok", "crash")
    assert list(ok) == list(crashed) == list(FIELD_NAMES)
    # flash attention is settled per test context (llama.cpp's "auto"): a test that never got
    # a context keeps the request
    same = set(part_fields("config", "build", "model", "effective")) - {"flash_attn"}
    assert {k: crashed[k] for k in same} == {k: ok[k] for k in same}
    assert ok["n_gpu_layers"] >= 0 and ok["n_layer_file"] == 4 and ok["gpu_info"] is not None
    assert ok["model_type"] and ok["cpu_info"] and ok["llama_cpp_python_version"]

    first, second = by_config[unloaded.config_id]
    assert (first["status"], second["status"]) == ("error", "error")
    assert list(first) == list(FIELD_NAMES)
    config_part = set(part_fields("config")) - {"config_id"}
    assert {k: first[k] for k in config_part} == {k: ok[k] for k in config_part}
    assert first["n_gpu_layers"] == -1  # never loaded: the request, llama.cpp's "all"
    assert first["llama_cpp_python_version"] == ok["llama_cpp_python_version"]
