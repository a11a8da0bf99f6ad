"""One number must never mean unbounded memory or time (issue 21, item 2).

Results records, catalog entries and GGUF headers are input: every count in them is bounded by
what a real model can have (core/limits.py), and each absurd one is a one-line error naming the
file and the field. A FIFO given as a model is refused before open() (which blocked for ever).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fuzz_headers as fz
import test_report_support as data
from fitbench.cli import main
from fitbench.core import limits
from fitbench.core.advise import recommend as advise
from fitbench.core.model import catalog
from fitbench.core.plan.placement import Placement
from fitbench.core.predict.layer_costs import catalog_costs
from fitbench.core.predict.model import FEATURES, prompt_features, step_features
from fitbench.core.report import build_report
from fitbench.core.results import schema
from fitbench.core.results.schema import ResultError, write_jsonl

HUGE = 2**63 - 1


# -- results records -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_prompt", HUGE),
        ("n_gen", HUGE),
        ("n_depth", 2**40),
        ("n_batch", HUGE),
        ("n_ubatch", -1),
        ("n_parallel", 2**31),
        ("n_parallel", 0),
        ("n_layer_model", 2**31),
        ("n_layer_file", -1),
        ("n_gpu_layers", 2**40),
        ("model_size", HUGE),
        ("avg_ts", -3.0),
        ("ttft_ms", 1e300),
        ("samples_ts", [1.0] * (limits.MAX_REPETITIONS + 1)),
        ("samples_ns", [1, -5]),
        ("vram_peak_per_gpu", [0] * (limits.MAX_GPUS + 1)),
        ("buffer_bytes", {"model": {"CPU": -1}}),
    ],
)
def test_an_absurd_record_field_is_an_error_naming_it(field: str, value: Any) -> None:
    record = data.h200_records()[0]
    record[field] = value
    with pytest.raises(ResultError, match=f"field '{field}'"):
        schema.validate(record)


def test_records_at_the_bounds_are_valid() -> None:
    record = data.h200_records()[0]
    record.update(n_prompt=limits.MAX_CONTEXT, n_parallel=limits.MAX_SEQUENCES, n_gpu_layers=-1)
    record.update(n_cpu_moe=-1, n_layer_model=limits.MAX_LAYERS, main_gpu=-1)
    schema.validate(record)


@pytest.mark.parametrize("command", ["recommend", "report"])
def test_a_results_file_with_2_63_prompt_tokens_is_refused_in_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = data.h200_records()
    records[4]["n_prompt"] = HUGE  # used to loop for ever in the predictor
    results = tmp_path / "r.jsonl"
    write_jsonl(records[:4], results)
    with results.open("a") as f:
        f.write(json.dumps(records[4]) + "\n")
    hardware = tmp_path / "hw.json"
    hardware.write_text(json.dumps(data.h200_hardware()))
    argv = [command, "--results", str(results), "--hardware", str(hardware)]
    if command == "report":
        argv += ["--pdf", str(tmp_path / "r.pdf")]
    with fz.time_bound():
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{results}:5: field 'n_prompt' is {HUGE}, outside 0..{limits.MAX_CONTEXT}" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r.pdf").exists()


def test_records_at_every_bound_are_advised_and_reported_in_bounded_time() -> None:
    """The largest values the schema accepts, all at once, still finish promptly."""
    records = data.h200_records()
    for r in records:
        r.update(n_prompt=limits.MAX_CONTEXT, n_ubatch=1, n_depth=limits.MAX_CONTEXT)
        r.update(n_gen=limits.MAX_CONTEXT, n_batch=limits.MAX_CONTEXT)
        if r["test"] == "batch":
            r["n_parallel"] = limits.MAX_SEQUENCES
    started = time.monotonic()
    with fz.time_bound(60):
        advice = advise.recommend(records, hardware=data.h200_hardware(), catalog=catalog.load())
        build_report(records, advice.to_dict(), data.h200_hardware())
    assert time.monotonic() - started < 60


def _loop_prompt_features(costs: Any, placement: Placement, n_prompt: int, n_ubatch: int) -> Any:
    """The predictor's former prompt loop: one step per ubatch (O(n_prompt / n_ubatch))."""
    total, done = np.zeros(len(FEATURES)), 0
    while done < n_prompt:
        size = min(n_ubatch, n_prompt - done)
        total += step_features(
            costs, placement, n_tokens=size, n_seqs=1, depth=100 + done + size / 2,
            n_outputs=1, has_gpu=True,
        )  # fmt: skip
        done += size
    return total


@pytest.mark.parametrize(("n_prompt", "n_ubatch"), [(512, 512), (1000, 512), (7, 3), (4096, 1)])
def test_prompt_features_in_constant_time_are_the_per_ubatch_sum(
    n_prompt: int, n_ubatch: int
) -> None:
    costs = catalog_costs(catalog.load().get("mixtral-8x7b-instruct"), "Q4_K_M")
    placement = Placement(20, 4)
    fast = prompt_features(
        costs, placement, n_prompt=n_prompt, n_ubatch=n_ubatch, depth=100, has_gpu=True
    )
    slow = _loop_prompt_features(costs, placement, n_prompt, n_ubatch)
    assert np.allclose(fast, slow, rtol=1e-9, atol=0)
    with fz.time_bound(5):  # the former loop: 2^27 steps
        prompt_features(
            costs, placement, n_prompt=limits.MAX_CONTEXT, n_ubatch=1, depth=0, has_gpu=True
        )


# -- catalog ---------------------------------------------------------------------------------


def _user_catalog(tmp_path: Path, **changes: str) -> Path:
    """A copy of the first shipped catalog entry, renamed, with lines replaced."""
    text = catalog.paths.models_toml().read_text(encoding="utf-8")
    entry = "[[models]]" + text.split("[[models]]")[1]
    entry = entry.replace('id = "mixtral-8x7b-instruct"', 'id = "evil"')
    for old, new in changes.items():
        assert old in entry
        entry = entry.replace(old, new)
    path = tmp_path / "models.toml"
    path.write_text("schema = 1\n" + entry, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("n_layer = 32", f"n_layer = {HUGE}", f"'n_layer' is {HUGE}, outside"),
        ("n_vocab = 32000", "n_vocab = 1099511627776", "'n_vocab' is 1099511627776, outside"),
        ("n_expert = 8", "n_expert = 4096", "'n_expert' is 4096, outside"),
        ("n_expert_used = 2", "n_expert_used = 9", "n_expert_used 9 is more than n_expert 8"),
        ("n_head = 32", "n_head = 0", "'n_head' is 0, outside"),
        ("n_ctx_train = 32768", "n_ctx_train = 9e99", "'n_ctx_train' must be an integer"),
        ("rope_freq_base = 1000000.0", "rope_freq_base = nan", "'rope_freq_base' is nan"),
        ("params_total = 46_700_000_000", f"params_total = {HUGE}", "'params_total' is"),
    ],
)
def test_an_absurd_catalog_entry_is_an_error_naming_file_line_and_key(
    tmp_path: Path, old: str, new: str, words: str
) -> None:
    path = _user_catalog(tmp_path, **{old: new})
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.load_file(path)
    message = str(exc.value)
    assert message.startswith(f"{path}:") and words in message
    key = new.split(" =")[0]
    line = int(message.split(":")[1])
    assert key in path.read_text().splitlines()[line - 1]


@pytest.mark.parametrize("command", [["models"], ["plan", "--model", "evil"]])
def test_commands_refuse_a_catalog_with_2_63_layers_in_one_line(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = catalog.user_catalog_path()
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(_user_catalog(tmp_path, **{"n_layer = 32": f"n_layer = {HUGE}"}).read_text())
    with fz.time_bound():
        assert main(command) == 1
    err = capsys.readouterr().err
    assert f"{user}:" in err and f"'n_layer' is {HUGE}" in err and err.count("\n") == 1


# -- GGUF headers and files ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "twin"])
def test_a_gguf_with_2_31_blocks_is_refused_in_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fz.CORPUS / "block-count-2e31.gguf"
    argv = [command, "--model", str(model)]
    if command == "twin":
        argv += ["--out", str(tmp_path / "t.gguf")]
    with fz.time_bound():  # plan and twin grew ~70 MB/s until the kernel killed them
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{model}: llama.block_count is 2147483648, outside" in err and err.count("\n") == 1
    assert not (tmp_path / "t.gguf").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--model", "{fifo}"],
        ["twin", "--model", "{fifo}", "--out", "{out}"],
        ["bench", "-m", "{fifo}", "-p", "8", "-n", "0", "-r", "1"],
    ],
    ids=["plan", "twin", "bench"],
)
def test_a_fifo_given_as_a_model_is_refused_before_open(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    args = [a.format(fifo=fifo, out=tmp_path / "t.gguf") for a in argv]
    with fz.time_bound(30):  # open() of a FIFO without a writer blocks for ever
        assert main(args) != 0
    err = capsys.readouterr().err
    assert str(fifo) in err and "FIFO" in err
