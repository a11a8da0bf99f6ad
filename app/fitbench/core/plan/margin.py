"""VRAM kept free beyond the memory plan, on each GPU: the margin a placement must leave.

The default comes from the planner's measured error, not from the card's size (docs/memory.md,
"Margin"): on 56 tests on an H200 the plan was within -35..+102 MiB of NVML, and on an H100 80GB
it never saw, within 102 MiB on all 30 records. The fixed part (384 MiB) is about 3.5 times the
worst error seen on either card, for a card or CUDA version never measured (its context may be a
little larger) and for other programs on a desktop GPU growing between detection and load; the
part that scales (0.5% of the VRAM planned against) covers the CUDA allocator's rounding, which
grows with the number and size of buffers. Against llama.cpp's own fit (`-fitt` 1024 MiB on top
of llama.cpp's buffers, after its CUDA context): with the context, cuBLAS and pool counted in the
plan, 384 MiB + 0.5% leaves the same or more on the GPU for any card up to ~80 GiB free.

A percentage alone (the old 5% of total VRAM, still what `--vram-headroom PCT` and a GUI setting
give) threw speed away: 4 GiB on an 80 GB card, ten 70B layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MiB = 1 << 20

DEFAULT_MARGIN_FIXED_BYTES = 384 * MiB
DEFAULT_MARGIN_FRACTION = 0.005


@dataclass(frozen=True)
class VramMargin:
    """fixed_bytes + fraction x the VRAM planned against (free, or total as a what-if)."""

    fixed_bytes: int = DEFAULT_MARGIN_FIXED_BYTES
    fraction: float = DEFAULT_MARGIN_FRACTION

    def __post_init__(self) -> None:
        if self.fixed_bytes < 0 or not 0.0 <= self.fraction < 1.0:
            raise ValueError(
                f"a VRAM margin is >= 0 bytes plus a fraction in [0, 1), got "
                f"{self.fixed_bytes} bytes + {self.fraction}"
            )

    @classmethod
    def percent(cls, pct: float) -> VramMargin:
        """The old rule: a percentage of each GPU's VRAM, nothing fixed."""
        return cls(0, pct / 100.0)

    def usable(self, have: int) -> int:
        """What a placement may need on a GPU with `have` bytes to plan against (rounded as the
        old percentage rule rounded: int(have x (1 - fraction)))."""
        return max(0, int(have * (1 - self.fraction)) - self.fixed_bytes)

    def have_for(self, need: int) -> int:
        """The least VRAM on which a placement needing `need` bytes fits with this margin."""
        return int((max(0, need) + self.fixed_bytes) / (1 - self.fraction)) + 1

    def bytes_for(self, have: int) -> int:
        return int(have) - self.usable(have)

    def words(self) -> str:
        parts = []
        if self.fixed_bytes:
            parts.append(f"{self.fixed_bytes / MiB:.0f} MiB")
        if self.fraction:
            parts.append(f"{self.fraction * 100:g}%")
        return " + ".join(parts) if parts else "nothing"

    def to_dict(self) -> dict[str, Any]:
        return {"fixed_bytes": self.fixed_bytes, "fraction": self.fraction, "words": self.words()}


DEFAULT_VRAM_MARGIN = VramMargin()

# what callers pass: a margin, a fraction of VRAM (the old headroom), or None for the default
MarginLike = VramMargin | float | None


def margin_of(value: MarginLike) -> VramMargin:
    if value is None:
        return DEFAULT_VRAM_MARGIN
    if isinstance(value, VramMargin):
        return value
    return VramMargin(0, float(value))


__all__ = [
    "DEFAULT_MARGIN_FIXED_BYTES",
    "DEFAULT_MARGIN_FRACTION",
    "DEFAULT_VRAM_MARGIN",
    "MarginLike",
    "VramMargin",
    "margin_of",
]
