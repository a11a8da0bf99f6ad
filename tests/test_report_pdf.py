"""The PDF report read back with poppler-utils: text, figures, fonts, attachment, page layout.

Inputs are the SYNTHETIC H200 records of test_report_support (speeds from facts.md, the rest
made up to match); the PDF is real, written by fpdf2 and read by pdftotext/pdfimages/pdffonts/
pdfdetach/pdftoppm.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import test_report_support as data
from fitbench.core.report import report_from_results_file
from fitbench.core.report.pdf import MARGIN_MM, WrittenReport
from fitbench.core.results.schema import write_jsonl

POPPLER = ("pdftotext", "pdfimages", "pdffonts", "pdfdetach", "pdftoppm", "pdfinfo")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in POPPLER),
    reason="poppler-utils not installed (apt-get install -y poppler-utils)",
)
MM_TO_PT = 72 / 25.4


def run(*argv: str | Path) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True)
    return proc.stdout


def text_of(pdf: Path, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return run("pdftotext", *pages, pdf, "-")


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def page_info(pdf: Path) -> tuple[int, float, float]:
    info = run("pdfinfo", pdf)
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]
    size = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", info, re.M)
    assert size is not None, info
    return pages, float(size.group(1)), float(size.group(2))


def words_outside_margins(pdf: Path) -> list[str]:
    """Words whose box leaves the page's text area: overflowing tables or unwrapped text."""
    html = run("pdftotext", "-bbox", pdf, "-")
    bad = []
    for page in re.finditer(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', html, re.S):
        width = float(page.group(1))
        lo = MARGIN_MM * MM_TO_PT - 1.0
        hi = width - MARGIN_MM * MM_TO_PT + 1.0
        for w in re.finditer(
            r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>',
            page.group(3),
        ):
            if float(w.group(1)) < lo or float(w.group(2)) > hi:
                bad.append(f"{w.group(3)!r} at x {w.group(1)}-{w.group(2)} (page width {width})")
    return bad


@dataclass(frozen=True)
class Built:
    results: Path
    pdf: Path
    written: WrittenReport
    text: str


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One report with every input (records, advice, hardware, samples, run metadata), A4."""
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FITBENCH_HOME", str(tmp / "home"))
        results = tmp / "h200.jsonl"
        write_jsonl(data.h200_records(), results)
        pdf = tmp / "report.pdf"
        written = report_from_results_file(
            results,
            pdf,
            advice=data.h200_advice(),
            hardware=data.h200_hardware(),
            samples=data.h200_samples(),
            run_meta=data.run_meta(),
        )
        yield Built(results, pdf, written, text_of(pdf))


def test_verdict_models_and_key_numbers_are_in_the_text(full_report: Built) -> None:
    text = flat(full_report.text)
    assert data.VERDICT in text
    page1 = flat(text_of(full_report.pdf, 1))
    assert data.VERDICT in page1, "the verdict is on the first page"
    for name in ("Mixtral 8x7B Instruct v0.1", "Llama 2 70B Chat"):
        assert name in text
    # numbers straight from the results file (tg at each placement, pp, batch aggregates)
    for number in ("196", "45.4", "5758", "1202", "8.50", "1.80", "28.3", "2612", "770", "9.00"):
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text), number
    for title in (
        "1. Verdict and recommended deployment",
        "2. The machine",
        "3. What was run",
        "4. Results",
        "5. Predicted vs measured",
        "6. Caveats",
        "7. Appendix",
    ):
        assert title in text
    assert "llama-server -m Mixtral-8x7B-Instruct-v0.1.Q4_K_M.gguf -ngl 99" in text
    assert "NVIDIA H200" in text and data.FINGERPRINT in text


def test_every_number_says_its_basis(full_report: Built) -> None:
    text = flat(full_report.text)
    assert "measured on a twin" in text
    # the one predicted expected number (RAM) is labelled predicted in the verdict table
    assert re.search(r"RAM 1\.3 GiB predicted", text)
    # predicted values in section 5 carry the marker next to the number
    assert "131 t/s (PREDICTED)" in text
    assert "1.3 GiB (PREDICTED)" in text
    section5 = text.split("5. Predicted vs measured", 2)[-1].split("6. Caveats")[0]
    # the residual table: its predicted column shouts, its errors are signed percentages
    assert "Point Kind Measured PREDICTED Unit Error" in section5
    assert "-6.9%" in section5 and "Mean absolute error of the predictor over 5" in section5
    # the results section's speed table has a basis column saying twin for every row
    speed = text.split("Speed per configuration", 1)[1].split("Latency and memory", 1)[0]
    assert speed.count(" twin ") >= 11


def test_figures_are_embedded_images(full_report: Built) -> None:
    listing = run("pdfimages", "-list", full_report.pdf).splitlines()[2:]
    images = [line.split() for line in listing if line.strip()]
    # offload, batch, memory, MoE advantage, predicted-vs-measured
    assert len(images) >= 5
    for img in images:
        width, height = int(img[3]), int(img[4])
        assert width >= 1000 and height >= 500, img
    text = flat(full_report.text)
    for caption in (
        "Figure: Generation speed vs GPU offload",
        "Figure: Throughput vs batch size",
        "Figure: Memory over the run",
        "Figure: MoE-vs-dense advantage",
        "Figure: Predicted vs measured",
    ):
        assert caption in text


def test_fonts_are_embedded(full_report: Built) -> None:
    rows = run("pdffonts", full_report.pdf).splitlines()[2:]
    assert rows, "the PDF names no fonts"
    for row in rows:
        cols = row.split()
        assert "DejaVu" in cols[0], row
        # columns: name, type (2 words), encoding, emb, sub, uni, object id
        assert cols[-5] == "yes", f"font not embedded: {row}"


def test_raw_results_are_attached_byte_for_byte(full_report: Built, tmp_path: Path) -> None:
    assert full_report.written.attachment == "embedded"
    listing = run("pdfdetach", "-list", full_report.pdf)
    assert "1 embedded files" in listing and "h200.jsonl" in listing
    run("pdfdetach", "-saveall", "-o", tmp_path, full_report.pdf)
    assert (tmp_path / "h200.jsonl").read_bytes() == full_report.results.read_bytes()
    assert "pdfdetach -saveall report.pdf" in flat(full_report.text)


def test_page_count_and_size(full_report: Built) -> None:
    pages, width, height = page_info(full_report.pdf)
    assert pages == full_report.written.pages
    assert 6 <= pages <= 12
    assert (round(width), round(height)) == (595, 842)  # A4
    assert f"page {pages} of {pages}" in text_of(full_report.pdf, pages)


def test_nothing_leaves_the_page_margins(full_report: Built) -> None:
    assert words_outside_margins(full_report.pdf) == []


def test_first_page_renders(full_report: Built, tmp_path: Path) -> None:
    from PIL import Image

    run("pdftoppm", "-f", "1", "-l", "1", "-r", "60", "-png", full_report.pdf, tmp_path / "p")
    (png,) = tmp_path.glob("p*.png")
    img = Image.open(png).convert("L")
    assert abs(img.size[0] - 496) <= 1 and abs(img.size[1] - 702) <= 1  # A4 at 60 dpi
    histogram = img.histogram()  # 256 grey levels
    dark = sum(histogram[:128])
    assert dark > 0.01 * img.size[0] * img.size[1], "page 1 is (nearly) blank"


def test_letter_long_tables_and_failures(tmp_path: Path) -> None:
    """Letter paper; a sweep with many placements, a long error and a long file name: the
    per-configuration tables are capped with a note, and nothing overflows."""
    records = data.h200_records()
    extra = []
    for ngl in range(1, 33):
        extra.append(data._tg(data.MIXTRAL, ngl, 8.5 + ngl * 0.6, data.T0))
        extra.append(data._tg(data.MIXTRAL, ngl, 7.5 + ngl * 0.6, data.T0, n_cpu_moe=8))
    failed = data._tg(data.LLAMA70, 81, 45.4, data.T0)
    failed.update(
        status="oom",
        avg_ts=0.0,
        n_gpu_layers=81,
        n_cpu_moe=4,
        error="CUDA error: out of memory while allocating 21474836480 bytes for the KV cache "
        "buffer on device 0 (NVIDIA H200); try fewer layers on the GPU or a smaller context",
        model_filename="/very/long/path/" + "nested-directory/" * 8 + "model.gguf",
    )
    results = tmp_path / "long.jsonl"
    write_jsonl([*records, *extra, failed], results)
    pdf = tmp_path / "letter.pdf"
    written = report_from_results_file(
        results, pdf, advice=data.h200_advice(), hardware=data.h200_hardware(), page_size="Letter"
    )
    pages, width, height = page_info(pdf)
    assert (round(width), round(height)) == (612, 792)
    assert pages == written.pages
    assert words_outside_margins(pdf) == []
    text = flat(text_of(pdf))
    assert "Tests that did not finish" in text and "CUDA error: out of memory" in text
    assert "oom" in text
    # 64 + the H200 file's configurations: the 40 most relevant are shown, the note says so
    assert re.search(r"The 40 most relevant of \d+ configurations", text)
    # the recommended configuration is among them (the advice's choice ranks first)
    choice = data.h200_advice()["choice"]
    assert choice["quant"] in text


def test_a_table_longer_than_a_page_repeats_its_heading(tmp_path: Path) -> None:
    from fitbench.core.report.model import Report, Section, Table
    from fitbench.core.report.pdf import write_pdf

    rows = tuple((f"row {i}", f"{i * 1.5:.1f}") for i in range(150))
    report = Report("t", "s", "2026-01-01T00:00:00+00:00", fingerprint="fp", verdict="v")
    section = Section("Long")
    section.add(Table(title="A long table", headers=("Name", "Value (t/s)"), rows=rows))
    report.sections = [section]
    written = write_pdf(report, tmp_path / "long.pdf", page_size="Letter")
    pdf = written.pdf
    heading_pages = [p for p in range(1, written.pages + 1) if "Value (t/s)" in text_of(pdf, p)]
    assert len(heading_pages) >= 2 and words_outside_margins(pdf) == []
