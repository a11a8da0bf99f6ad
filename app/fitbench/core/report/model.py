"""The report as data: sections of paragraphs, key/value lists, tables and figures (PNG bytes).

The builder (build.py) turns results + advice + hardware into this model; a renderer (pdf.py, or
the GUI's preview) only lays it out. Nothing here knows about PDF or Qt, so the same report can
be checked in tests and shown elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Basis = Literal["measured-real", "measured-twin", "predicted"]
BASES: tuple[Basis, ...] = ("measured-real", "measured-twin", "predicted")

# The words a reader sees; short forms fit table cells.
BASIS_LABEL: dict[str, str] = {
    "measured-real": "measured on the real file",
    "measured-twin": "measured on a twin",
    "predicted": "predicted",
}
BASIS_SHORT: dict[str, str] = {
    "measured-real": "real file",
    "measured-twin": "twin",
    "predicted": "PREDICTED",
}


class ReportError(ValueError):
    """Input that cannot become a report, or a report that cannot be written; says what to fix."""


def basis_of_source(source: str) -> Basis:
    """The basis of a measured result record (its `source` field)."""
    return "measured-real" if source == "real" else "measured-twin"


def basis_label(basis: str) -> str:
    return BASIS_LABEL.get(basis, f"unknown basis ({basis or 'not stated'})")


def basis_short(basis: str) -> str:
    return BASIS_SHORT.get(basis, basis or "?")


ParagraphStyle = Literal["body", "heading", "note", "verdict", "warning", "code"]


@dataclass(frozen=True)
class Paragraph:
    text: str
    style: ParagraphStyle = "body"


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class KeyValues:
    """A two-column list of facts (label, value)."""

    rows: tuple[tuple[str, str], ...]
    title: str = ""


@dataclass(frozen=True)
class Table:
    """A table; `weights` are relative column widths, `numeric` columns are right-aligned."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    weights: tuple[float, ...] = ()
    numeric: tuple[bool, ...] = ()
    note: str = ""
    mono_columns: tuple[int, ...] = ()  # hashes and file names: monospace, broken anywhere
    font_size: float = 7.5

    def __post_init__(self) -> None:
        width = len(self.headers)
        for row in self.rows:
            if len(row) != width:
                raise ValueError(
                    f"table {self.title!r}: row {row!r} has {len(row)} cells, not {width}"
                )
        if self.weights and len(self.weights) != width:
            raise ValueError(
                f"table {self.title!r}: {len(self.weights)} weights for {width} columns"
            )
        if self.numeric and len(self.numeric) != width:
            raise ValueError(f"table {self.title!r}: numeric flags do not match the columns")


@dataclass(frozen=True)
class Figure:
    """A figure rendered to PNG; `alt` describes it for readers who cannot see it."""

    title: str
    png: bytes
    caption: str
    alt: str = ""
    width_px: int = 0
    height_px: int = 0


@dataclass(frozen=True)
class AttachmentNote:
    """Where the raw results went: the renderer fills in whether they were embedded or written
    beside the PDF, because only it knows."""

    filename: str
    n_records: int
    sha256: str


Block = Paragraph | Bullets | KeyValues | Table | Figure | AttachmentNote


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.blocks.append(block)

    def para(self, text: str, style: ParagraphStyle = "body") -> None:
        self.blocks.append(Paragraph(text, style))


@dataclass
class Report:
    title: str
    subtitle: str
    generated: str  # ISO-8601 UTC
    fingerprint: str
    sections: list[Section] = field(default_factory=list)
    verdict: str = ""  # the one-sentence answer, also the PDF's subject

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def section(self, title_start: str) -> Section:
        for s in self.sections:
            if s.title.startswith(title_start):
                return s
        raise KeyError(title_start)
