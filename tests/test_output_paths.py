"""Output paths never clobber what they should not (issue 21, items 1 and 3).

`report --pdf`, `bench --export-run --out` and `twin --out` refuse a device node, a FIFO, a
folder and a symbolic link (core/outfile.py: a link is never replaced nor written through),
leaving the target exactly as it was; `twin --out X.gguf` writes X.gguf; a failed or killed
write leaves no file behind.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import fuzz_headers as fz
import test_report_support as data
from fitbench.cli import main
from fitbench.core import outfile
from fitbench.core.bench.models import resolve_path
from fitbench.core.results.schema import write_jsonl
from fitbench.core.results.store import open_store
from fitbench.core.twin.writer import read_twin_marker, twin_kind

KINDS = ("device", "fifo", "symlink", "dangling-symlink", "folder")
WORDS = {
    "device": "it is a character device, not a regular file",
    "fifo": "it is a FIFO (named pipe), not a regular file",
    "symlink": "it is a symbolic link (to ",
    "dangling-symlink": "it is a symbolic link (to ",
    "folder": "that is a folder",
}


def make_target(folder: Path, kind: str) -> Path:
    target = folder / "target"
    if kind == "device":
        try:  # /dev/null's numbers: a harmless device even if something wrote to it
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        (folder / "precious.txt").write_text("keep me")
        target.symlink_to("precious.txt")
    elif kind == "dangling-symlink":
        target.symlink_to("nowhere/else.txt")
    else:
        target.mkdir()
    return target


def state(folder: Path) -> dict[str, tuple[int, str]]:
    """Every entry of the folder: its file type and, for links and files, what it holds."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            what = p.read_text(errors="replace")
        else:
            what = ""
        out[p.name] = (stat.S_IFMT(st.st_mode), what)
    return out


@pytest.fixture
def out_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "out"
    folder.mkdir()
    yield folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    write_jsonl(data.h200_records(), path)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_report_refuses_a_target_that_is_not_a_regular_file(
    kind: str, out_dir: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = make_target(out_dir, kind)
    before = state(out_dir)
    assert main(["report", "--results", str(results), "--pdf", str(target), "--no-advice"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the report to {target}" in err and WORDS[kind] in err
    assert err.count("\n") == 1  # one line, no traceback
    assert state(out_dir) == before


@pytest.mark.parametrize("kind", KINDS)
def test_export_run_refuses_a_target_that_is_not_a_regular_file(
    kind: str, out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store() as db:
        run_id = db.add_run(hardware_fingerprint=data.FINGERPRINT)
        for record in data.h200_records()[:3]:
            db.add_record(run_id, record)
    target = make_target(out_dir, kind)
    before = state(out_dir)
    assert main(["bench", "--export-run", run_id, "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the exported run" in err and WORDS[kind] in err
    assert state(out_dir) == before
    # and a plain path works
    assert main(["bench", "--export-run", run_id, "--out", str(out_dir / "run.jsonl")]) == 0
    assert len((out_dir / "run.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_twin_refuses_a_target_that_is_not_a_regular_file(
    kind: str, out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = make_target(out_dir, kind)
    before = state(out_dir)
    assert main(["twin", "--model", str(fz.CORPUS / "valid.gguf"), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the twin" in err and WORDS[kind] in err
    # nothing beside it either: `twin --out /dev/full` once left /dev/full.fitbench-twin.gguf
    assert state(out_dir) == before


def test_twin_out_is_written_as_given_and_still_recognised(
    out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = out_dir / "X.gguf"
    assert main(["twin", "--model", str(fz.CORPUS / "valid.gguf"), "--out", str(out)]) == 0
    assert [p.name for p in out_dir.iterdir()] == ["X.gguf"]
    # the marker in the header makes it a twin, whatever the name
    assert twin_kind(out) == "twin" and read_twin_marker(out) is not None
    assert resolve_path(out).source == "twin"
    # writing it again replaces the regular file
    assert main(["twin", "--model", str(fz.CORPUS / "valid.gguf"), "--out", str(out)]) == 0
    assert [p.name for p in out_dir.iterdir()] == ["X.gguf"]


@pytest.mark.parametrize("name", ["q8_1-tensors.gguf", "q8_k-tensor.gguf"])
def test_twin_of_a_type_ggml_cannot_make_is_refused_before_writing(
    name: str, out_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: GGML_ASSERT aborted the process (SIGABRT, a 90-line backtrace) and left a .partial
    rc = main(["twin", "--model", str(fz.CORPUS / name), "--out", str(out_dir / "t.gguf")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "which ggml cannot quantize" in err and name in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named-partial"])
def test_atomic_output_is_all_or_nothing(
    anonymous: bool, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not anonymous:
        monkeypatch.setattr(outfile, "_anonymous", lambda dir_fd: None)
    target = out_dir / "r.bin"
    target.write_bytes(b"old")
    for interrupt in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(interrupt)), outfile.atomic_output(target) as f:
            f.write(b"half of the new")
            raise interrupt
        assert state(out_dir) == {"r.bin": (stat.S_IFREG, "old")}
    with outfile.atomic_output(target) as f:
        f.write(b"new")
    assert state(out_dir) == {"r.bin": (stat.S_IFREG, "new")}


def test_a_link_appearing_before_the_rename_is_not_replaced(out_dir: Path) -> None:
    target = out_dir / "r.bin"
    (out_dir / "precious.txt").write_text("keep me")
    raced = pytest.raises(outfile.OutputPathError, match="symbolic link")
    with raced, outfile.atomic_output(target) as f:
        f.write(b"new")
        target.symlink_to("precious.txt")  # appeared while the bytes were written
    assert (out_dir / "precious.txt").read_text() == "keep me" and target.is_symlink()
    assert sorted(p.name for p in out_dir.iterdir()) == ["precious.txt", "r.bin"]


def test_raw_results_beside_the_pdf_never_replace_a_link(out_dir: Path, results: Path) -> None:
    from fitbench.core.report import ReportError, build_report, write_pdf
    from fitbench.core.results.schema import read_jsonl

    report = build_report(read_jsonl(results), None, None, raw_filename="run.jsonl")
    beside = out_dir / "r.run.jsonl"
    (out_dir / "precious.txt").write_text("keep me")
    beside.symlink_to("precious.txt")
    with pytest.raises(ReportError, match=r"cannot write the raw results .* symbolic link"):
        write_pdf(report, out_dir / "r.pdf", raw_jsonl=results.read_bytes(), max_embed_bytes=10)
    assert sorted(p.name for p in out_dir.iterdir()) == ["precious.txt", "r.run.jsonl"]
    assert (out_dir / "precious.txt").read_text() == "keep me"
