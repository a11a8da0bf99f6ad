"""The report model -> a PDF file, with fpdf2 (pure Python, no display, fonts embedded).

Why fpdf2 and not Qt's QPdfWriter: the report lives in the Qt-free core (the CLI and `quick` run
where Qt is absent), fpdf2 embeds TrueType subsets, lays out real tables with wrapping and
repeated headings across pages, and can attach the raw JSONL inside the PDF (embed_file).
DejaVu Sans comes from matplotlib's own package data, so the font exists wherever the figures
can be drawn. The file is written to a temporary file in the target folder and renamed, so a
failure never leaves a partial PDF (fitbench.core.outfile: a device, a FIFO or a symbolic link
at the target is refused, never replaced).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import matplotlib
from fpdf import FPDF, FontFace
from fpdf.enums import Align, TableCellFillMode, XPos, YPos
from fpdf.util import Padding

from fitbench import __version__
from fitbench.core.outfile import OutputPathError, atomic_output, check_output, write_output
from fitbench.core.report.model import (
    AttachmentNote,
    Bullets,
    Figure,
    KeyValues,
    Paragraph,
    Report,
    ReportError,
    Table,
)
from fitbench.core.report.raw import RawResults

PageSize = Literal["A4", "Letter"]
PAGE_SIZES: tuple[str, ...] = ("A4", "Letter")
MAX_EMBED_BYTES = 64 * 1024 * 1024  # beyond this the JSONL goes beside the PDF, not inside
MARGIN_MM = 16.0

INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (31, 95, 168)
RULE = (206, 212, 218)
ZEBRA = (244, 246, 248)
HEAD_FILL = (226, 234, 244)
VERDICT_FILL = (231, 241, 252)
WARNING_FILL = (255, 243, 205)
CODE_FILL = (241, 243, 245)


def _font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@dataclass(frozen=True)
class WrittenReport:
    pdf: Path
    pages: int
    attachment: Literal["embedded", "beside", "none"]
    beside: Path | None  # the JSONL written next to the PDF when it was not embedded


class _Document(FPDF):
    def __init__(self, report: Report, page_size: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format=page_size.lower())
        self.report = report
        fonts = _font_dir()
        for style, name in (
            ("", "DejaVuSans"),
            ("B", "DejaVuSans-Bold"),
            ("I", "DejaVuSans-Oblique"),
            ("BI", "DejaVuSans-BoldOblique"),
        ):
            self.add_font("DejaVu", style, fonts / f"{name}.ttf")
        self.add_font("DejaVuMono", "", fonts / "DejaVuSansMono.ttf")
        self.add_font("DejaVuMono", "B", fonts / "DejaVuSansMono-Bold.ttf")
        self.set_margins(MARGIN_MM, MARGIN_MM + 2, MARGIN_MM)
        self.set_auto_page_break(True, margin=MARGIN_MM)
        self.set_title(report.title)
        self.set_subject(report.verdict)
        self.set_author("FitBench")
        self.set_creator(f"FitBench {__version__}")
        self.set_keywords("Mixtral, Llama 2 70B, llama.cpp, GGUF, benchmark")
        self.set_lang("en")
        self.set_creation_date(datetime.now(UTC))

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_y(8)
        self.set_font("DejaVu", "", 7)
        self.set_text_color(*MUTED)
        self.cell(0, 4, f"FitBench report · {self.report.subtitle}", align="L")
        self.set_draw_color(*RULE)
        self.line(self.l_margin, 13, self.w - self.r_margin, 13)
        self.set_y(MARGIN_MM + 2)
        self.set_text_color(*INK)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("DejaVu", "", 7)
        self.set_text_color(*MUTED)
        self.cell(
            0, 4, f"FitBench {__version__} · {_readable_time(self.report.generated)}", align="L"
        )
        self.set_x(self.l_margin)
        self.cell(0, 4, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(*INK)

    # -- blocks ---------------------------------------------------------------------------------

    def text_lines(self, w: float, h: float, text: str, **kw: Any) -> None:
        """Wrapped, left-aligned text; the next element starts at the left margin below it."""
        self.multi_cell(w, h, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT, **kw)

    def room(self, mm: float) -> None:
        """A page break now unless `mm` fit: headings never sit alone at the bottom of a page."""
        if self.get_y() + mm > self.h - self.b_margin:
            self.add_page()

    def title_block(self) -> None:
        self.set_font("DejaVu", "B", 19)
        self.set_text_color(*ACCENT)
        self.text_lines(0, 9, self.report.title)
        self.set_font("DejaVu", "", 9)
        self.set_text_color(*MUTED)
        self.text_lines(0, 4.6, self.report.subtitle)
        self.text_lines(0, 4.6, f"Generated {_readable_time(self.report.generated)}")
        self.set_draw_color(*ACCENT)
        self.set_line_width(0.6)
        self.line(self.l_margin, self.get_y() + 2, self.w - self.r_margin, self.get_y() + 2)
        self.set_line_width(0.2)
        self.set_text_color(*INK)
        self.ln(6)

    def section_heading(self, title: str) -> None:
        self.room(45)
        self.ln(2)
        self.start_section(title, level=0)
        self.set_font("DejaVu", "B", 13)
        self.set_text_color(*ACCENT)
        self.text_lines(0, 7, title)
        self.set_text_color(*INK)
        self.ln(1.5)

    def block_title(self, title: str) -> None:
        if not title:
            return
        self.room(22)
        self.set_font("DejaVu", "B", 9.5)
        self.text_lines(0, 5.5, title)
        self.ln(0.5)

    def paragraph(self, p: Paragraph) -> None:
        if p.style == "heading":
            self.block_title(p.text)
        elif p.style == "verdict":
            self._verdict(p.text)
        elif p.style == "warning":
            self._boxed(p.text, WARNING_FILL, ("DejaVu", "", 9.5), 5.0)
        elif p.style == "code":
            self.room(12)
            self.set_font("DejaVuMono", "", 7.8)
            self.set_fill_color(*CODE_FILL)
            self.text_lines(0, 4.0, p.text, fill=True, padding=Padding(1.6, 2.2, 1.6, 2.2))
            self.ln(2)
        elif p.style == "note":
            self.set_font("DejaVu", "I", 8.3)
            self.set_text_color(*MUTED)
            self.text_lines(0, 4.2, p.text)
            self.set_text_color(*INK)
            self.ln(1.5)
        else:
            self.set_font("DejaVu", "", 9.5)
            self.text_lines(0, 5.0, p.text)
            self.ln(1)

    def _verdict(self, text: str) -> None:
        """The first sentence large and bold, the rest (often long) in body text, one box."""
        match = re.match(r"(.+?[.!?])\s+(\S.*)$", text, re.S)
        headline, rest = (match.group(1), match.group(2)) if match else (text, "")
        self.room(30)
        self.set_fill_color(*VERDICT_FILL)
        self.set_draw_color(*ACCENT)
        self.set_font("DejaVu", "B", 12)
        pad_bottom = 1.5 if rest else 3
        self.text_lines(
            0, 6.2, headline, fill=True, border="L", padding=Padding(3, 4, pad_bottom, 4)
        )
        if rest:
            self.set_font("DejaVu", "", 9.5)
            self.text_lines(0, 4.9, rest, fill=True, border="L", padding=Padding(0, 4, 3, 4))
        self.ln(3)

    def _boxed(
        self, text: str, fill: tuple[int, int, int], font: tuple[str, str, float], line_h: float
    ) -> None:
        self.room(20)
        self.set_font(*font)
        self.set_fill_color(*fill)
        self.set_draw_color(*ACCENT)
        self.text_lines(0, line_h, text, fill=True, border="L", padding=Padding(3, 4, 3, 4))
        self.ln(3)

    def bullets(self, b: Bullets) -> None:
        self.set_font("DejaVu", "", 9.2)
        indent = 5.0
        for item in b.items:
            self.room(10)
            y = self.get_y()
            self.set_x(self.l_margin)
            self.cell(indent, 4.8, "•")
            self.set_xy(self.l_margin + indent, y)
            self.text_lines(self.epw - indent, 4.8, item)
            self.ln(0.8)
        self.ln(1.5)

    def _plain_fill(self) -> None:
        """fpdf2 tables paint their unstriped rows in the current fill colour: reset it, or the
        colour of the last box (a warning, a code block) leaks into every other row."""
        self.set_fill_color(255, 255, 255)

    def key_values(self, kv: KeyValues) -> None:
        self.block_title(kv.title)
        self._plain_fill()
        self.set_font("DejaVu", "", 8.4)
        with self.table(
            col_widths=(30, 70),
            first_row_as_headings=False,
            borders_layout="NONE",
            line_height=4.4,
            text_align=("LEFT", "LEFT"),
            padding=(0.8, 1.5),
            cell_fill_color=ZEBRA,
            cell_fill_mode=TableCellFillMode.ROWS,
            width=self.epw,
        ) as table:
            bold = FontFace(emphasis="BOLD")
            for key, value in kv.rows:
                row = table.row()
                row.cell(key, style=bold)
                row.cell(value)
        self.ln(3)

    def data_table(self, t: Table) -> None:
        self.block_title(t.title)
        self._plain_fill()
        self.set_font("DejaVu", "", t.font_size)
        weights = t.weights or tuple(1.0 for _ in t.headers)
        aligns = tuple(
            "RIGHT" if n else "LEFT" for n in (t.numeric or tuple(False for _ in t.headers))
        )
        mono = FontFace(family="DejaVuMono", size_pt=t.font_size - 0.6)
        with self.table(
            col_widths=weights,
            headings_style=FontFace(emphasis="BOLD", fill_color=HEAD_FILL),
            line_height=t.font_size * 0.5,
            text_align=aligns,
            borders_layout="SINGLE_TOP_LINE",
            cell_fill_color=ZEBRA,
            cell_fill_mode=TableCellFillMode.ROWS,
            padding=(0.9, 1.2),
            repeat_headings=1,
            width=self.epw,
        ) as table:
            head = table.row()
            for h in t.headers:
                head.cell(h)
            for cells in t.rows:
                row = table.row()
                for j, text in enumerate(cells):
                    row.cell(text, style=mono if j in t.mono_columns else None)
        if t.note:
            self.set_font("DejaVu", "I", 7.5)
            self.set_text_color(*MUTED)
            self.text_lines(0, 3.8, t.note)
            self.set_text_color(*INK)
        self.ln(3.5)

    def figure(self, f: Figure) -> None:
        width = min(self.epw, 172.0)
        aspect = (f.height_px / f.width_px) if f.width_px else 0.5
        if f.width_px and f.width_px < 1200:  # narrow figures (scatter) stay narrow
            width = min(width, 130.0)
        height = width * aspect
        self.room(height + 14)
        x = self.l_margin + (self.epw - width) / 2
        self.image(
            io.BytesIO(f.png), x=x, w=width, h=height, title=f.title, alt_text=f.alt or f.title
        )
        self.set_y(self.get_y() + 1)
        self.set_font("DejaVu", "I", 7.8)
        self.set_text_color(*MUTED)
        self.text_lines(0, 3.9, f"Figure: {f.title}. {f.caption}")
        self.set_text_color(*INK)
        self.ln(4)


def _readable_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def render(
    report: Report,
    *,
    page_size: str = "A4",
    attachment: str = "",
    embed: tuple[str, bytes] | None = None,
) -> tuple[bytes, int]:
    """PDF bytes and page count; `attachment` says where the raw results are."""
    if page_size not in PAGE_SIZES:
        raise ReportError(f"page size must be one of {', '.join(PAGE_SIZES)}, not {page_size!r}")
    doc = _Document(report, page_size)
    doc.alias_nb_pages()
    doc.add_page()
    doc.title_block()
    for section in report.sections:
        doc.section_heading(section.title)
        for block in section.blocks:
            if isinstance(block, Paragraph):
                doc.paragraph(block)
            elif isinstance(block, Bullets):
                doc.bullets(block)
            elif isinstance(block, KeyValues):
                doc.key_values(block)
            elif isinstance(block, Table):
                doc.data_table(block)
            elif isinstance(block, Figure):
                doc.figure(block)
            elif isinstance(block, AttachmentNote):
                doc.block_title("Raw results")
                doc.paragraph(
                    Paragraph(attachment or "The raw results were not given to the PDF writer.")
                )
    if embed is not None:
        name, data = embed
        doc.embed_file(
            bytes=data,
            basename=name,
            desc="FitBench raw result records (JSON lines)",
            mime_type="application/jsonl",
            compress=True,
        )
    return bytes(doc.output()), doc.page_no()


def _attachment_note(report: Report) -> AttachmentNote | None:
    for s in report.sections:
        for b in s.blocks:
            if isinstance(b, AttachmentNote):
                return b
    return None


def check_target(out: Path, page_size: str = "A4") -> None:
    """Fail before any work when the PDF could not be written or the paper is unknown: the
    target must be absent or a regular file (never a folder, a device, a FIFO or a symbolic
    link: see fitbench.core.outfile), in a folder that exists."""
    if page_size not in PAGE_SIZES:
        raise ReportError(f"page size must be one of {', '.join(PAGE_SIZES)}, not {page_size!r}")
    try:
        check_output(out, "the report")
    except OutputPathError as exc:
        raise ReportError(str(exc)) from None


def atomic_write(path: Path, data: bytes, what: str = "the report") -> None:
    """All or nothing: the old file or the whole new one, never a device or link replaced."""
    try:
        write_output(path, data, what)
    except OutputPathError as exc:
        raise ReportError(str(exc)) from None


def beside_path(out: Path, filename: str) -> Path:
    stem = Path(filename).stem or "results"
    return out.with_name(f"{out.stem}.{stem}.jsonl")


def write_pdf(
    report: Report,
    out: Path,
    *,
    page_size: str = "A4",
    raw_jsonl: bytes | None = None,
    raw_file: RawResults | None = None,
    max_embed_bytes: int = MAX_EMBED_BYTES,
) -> WrittenReport:
    """Render `report` to `out`. The raw JSONL (bytes, or a scanned file streamed without being
    held in memory) is embedded, or written beside the PDF when it is larger than
    `max_embed_bytes`; either way the appendix says where it is."""
    out = Path(out)
    check_target(out, page_size)
    note = _attachment_note(report)
    filename = note.filename if note else "results.jsonl"
    where: Literal["embedded", "beside", "none"] = "none"
    beside: Path | None = None
    embed: tuple[str, bytes] | None = None
    raw: RawResults | bytes | None = raw_file if raw_file is not None else raw_jsonl
    if raw is not None:
        if isinstance(raw, bytes):
            size, digest = len(raw), hashlib.sha256(raw).hexdigest()
        else:
            size, digest = raw.n_bytes, raw.sha256
        count = note.n_records if note else (raw.count(b"\n") if isinstance(raw, bytes) else 0)
        if size <= max_embed_bytes:
            where = "embedded"
            embed = (filename, raw if isinstance(raw, bytes) else raw.read())
            sentence = (
                f"The raw results are attached inside this PDF as {filename} ({count} records, "
                f"{size} bytes, SHA-256 {digest}). Open the attachments pane of your "
                f"PDF viewer, or run: pdfdetach -saveall {out.name}"
            )
        else:
            where, beside = "beside", beside_path(out, filename)
            try:
                check_output(beside, "the raw results")
            except OutputPathError as exc:
                raise ReportError(str(exc)) from None
            sentence = (
                f"The raw results ({count} records, {size} bytes, SHA-256 {digest}) "
                f"were too large to embed and were written beside this PDF as {beside.name}."
            )
    else:
        sentence = "The raw results were not available to the PDF writer, so none are attached."
    data, pages = render(report, page_size=page_size, attachment=sentence, embed=embed)
    embed = None  # the PDF bytes hold it now
    if beside is not None and raw is not None:
        _write_beside(beside, raw)
    try:
        atomic_write(out, data)
    except ReportError:
        if beside is not None:
            with contextlib.suppress(OSError):
                beside.unlink()
        raise
    return WrittenReport(pdf=out, pages=pages, attachment=where, beside=beside)


def _write_beside(beside: Path, raw: RawResults | bytes) -> None:
    if isinstance(raw, bytes):
        atomic_write(beside, raw, "the raw results")
        return
    try:
        with atomic_output(beside, "the raw results") as f:
            for chunk in raw.chunks():
                f.write(chunk)
    except OutputPathError as exc:
        raise ReportError(str(exc)) from None
    except OSError as exc:
        raise ReportError(
            f"cannot write the raw results to {beside}: {exc.strerror or exc}"
        ) from None
