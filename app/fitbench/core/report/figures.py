"""Report figures: matplotlib's Agg canvas straight to PNG bytes.

matplotlib.figure.Figure + FigureCanvasAgg, never pyplot: pyplot keeps global figure state and
picks a GUI backend, and the desktop app runs Qt in the same process. Every figure has a title,
axis labels with units, and says in its legend what was measured and what was predicted.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

# Figure is re-exported: the report sections name the type of what these functions return
from fitbench.core.report.model import Basis
from fitbench.core.report.model import Figure as Figure

GIB = 1024**3
DPI = 200
WIDTH_IN = 7.0
HEIGHT_IN = 3.5
PALETTE = ("#1f5fa8", "#d9730d", "#2b8a3e", "#9c36b5", "#c92a2a", "#495057")
MARKERS = ("o", "s", "^", "D", "v", "P")


@dataclass(frozen=True)
class Series:
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    basis: Basis
    group: int = 0  # colour: one per model, so a model keeps its colour across figures


def _new(width_in: float = WIDTH_IN, height_in: float = HEIGHT_IN) -> MplFigure:
    fig = MplFigure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.set_facecolor("white")
    return fig


def _png(fig: MplFigure, title: str, caption: str, alt: str) -> Figure:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    # RGB without alpha: one image per figure in the PDF instead of an image plus a soft mask.
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return Figure(
        title=title,
        png=out.getvalue(),
        caption=caption,
        alt=alt,
        width_px=img.width,
        height_px=img.height,
    )


def _style_axes(ax: Axes) -> None:
    ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)


def _plain_log_ticks(ax: Axes, axis: str) -> None:
    """Log axes labelled 2, 5, 10, 20, ... instead of 10^x: readers compare t/s, not exponents."""
    fmt = FuncFormatter(lambda v, _pos: f"{v:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(NullFormatter())


def _plot_series(ax: Axes, series: Sequence[Series]) -> None:
    for s in series:
        colour = PALETTE[s.group % len(PALETTE)]
        marker = MARKERS[s.group % len(MARKERS)]
        predicted = s.basis == "predicted"
        ax.plot(
            s.x,
            s.y,
            linestyle="--" if predicted else "-",
            marker=marker,
            markersize=4.5,
            linewidth=1.4,
            color=colour,
            markerfacecolor="white" if predicted else colour,
            label=s.label,
        )


def _legend(ax: Axes) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, frameon=False, loc="best")


def tg_vs_offload(series: Sequence[Series], caption: str) -> Figure:
    """Generation speed against the share of layers on the GPU, one line per model/quant."""
    fig = _new()
    ax = fig.add_subplot()
    _plot_series(ax, series)
    ax.set_yscale("log")
    _plain_log_ticks(ax, "y")
    ax.set_xlim(-3, 103)
    ax.set_xlabel("layers on the GPU (% of the model's offloadable layers)", fontsize=8.5)
    ax.set_ylabel("generation speed, tg (tokens/s, log scale)", fontsize=8.5)
    title = "Generation speed vs GPU offload"
    ax.set_title(title, fontsize=10, fontweight="bold")
    _style_axes(ax)
    _legend(ax)
    alt = "; ".join(
        f"{s.label}: "
        + ", ".join(f"{x:.0f}% -> {y:.3g} t/s" for x, y in zip(s.x, s.y, strict=True))
        for s in series
    )
    return _png(fig, title, caption, alt)


def throughput_vs_batch(series: Sequence[Series], caption: str) -> Figure:
    """Aggregate generation throughput against the number of parallel sequences B."""
    fig = _new()
    ax = fig.add_subplot()
    _plot_series(ax, series)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _plain_log_ticks(ax, "y")
    xs = sorted({x for s in series for x in s.x})
    if xs:
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel("parallel sequences B (log scale)", fontsize=8.5)
    ax.set_ylabel("aggregate generation (tokens/s, log scale)", fontsize=8.5)
    title = "Throughput vs batch size (parallel sequences)"
    ax.set_title(title, fontsize=10, fontweight="bold")
    _style_axes(ax)
    _legend(ax)
    alt = "; ".join(
        f"{s.label}: " + ", ".join(f"B={x:g} -> {y:.3g} t/s" for x, y in zip(s.x, s.y, strict=True))
        for s in series
    )
    return _png(fig, title, caption, alt)


def memory_over_time(
    t_s: Sequence[float],
    vram_bytes: Sequence[float | None],
    ram_bytes: Sequence[float | None],
    caption: str,
    *,
    from_peaks: bool,
) -> Figure:
    """VRAM and RAM in GiB over the run; a step plot when only per-test peaks are known."""
    fig = _new(height_in=3.0)
    ax = fig.add_subplot()
    for values, label, colour in (
        (vram_bytes, "VRAM in use (all GPUs)", PALETTE[2]),
        (ram_bytes, "RAM (worker process RSS)", PALETTE[3]),
    ):
        pts = [(t, v / GIB) for t, v in zip(t_s, values, strict=True) if v is not None]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if from_peaks:
            ax.step(xs, ys, where="post", label=label, color=colour, lw=1.3)
        else:
            ax.plot(xs, ys, label=label, color=colour, lw=1.3)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since the run started (s)", fontsize=8.5)
    ax.set_ylabel("memory (GiB)", fontsize=8.5)
    title = "Memory over the run" + (" (peak per test)" if from_peaks else "")
    ax.set_title(title, fontsize=10, fontweight="bold")
    _style_axes(ax)
    _legend(ax)
    return _png(fig, title, caption, "VRAM and RAM in GiB against seconds since the run started")


@dataclass(frozen=True)
class RatioPoint:
    x: float
    ratio: float
    basis: Basis


def moe_advantage(
    by_batch: Sequence[RatioPoint], by_offload: Sequence[RatioPoint], caption: str
) -> Figure:
    """MoE/dense generation-speed ratio against batch size and against GPU share."""
    panels = [(p, name) for p, name in ((by_batch, "batch"), (by_offload, "offload")) if p]
    fig = _new(height_in=3.1)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (points, name) in zip(axes, panels, strict=False):
        for basis, filled in (
            ("measured-real", True),
            ("measured-twin", True),
            ("predicted", False),
        ):
            pts = sorted((p.x, p.ratio) for p in points if p.basis == basis)
            if not pts:
                continue
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                linestyle="-" if filled else "--",
                marker="o",
                markersize=4.5,
                color=PALETTE[0] if filled else PALETTE[5],
                markerfacecolor=PALETTE[0] if filled else "white",
                label={
                    "measured-real": "measured (real files)",
                    "measured-twin": "measured (twins)",
                    "predicted": "predicted",
                }[basis],
            )
        ax.axhline(1.0, color="#888888", lw=0.8, ls=":")
        ax.set_ylim(bottom=0)
        if name == "batch":
            ax.set_xscale("log", base=2)
            xs = sorted({p.x for p in points})
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.set_xlabel("parallel sequences B", fontsize=8.5)
            ax.set_title("by batch size", fontsize=9)
        else:
            ax.set_xlim(-3, 103)
            ax.set_xlabel("share of layers on the GPU (%)", fontsize=8.5)
            ax.set_title("by GPU offload", fontsize=9)
        ax.set_ylabel("MoE speed ÷ dense speed (×)", fontsize=8.5)
        _style_axes(ax)
        _legend(ax)
    title = "MoE-vs-dense advantage (Mixtral tg ÷ Llama 2 70B tg)"
    fig.suptitle(title, fontsize=10, fontweight="bold")
    return _png(fig, title, caption, "ratio of MoE to dense generation speed; 1.0 means equal")


@dataclass(frozen=True)
class Point:
    predicted: float
    measured: float
    group: str  # one colour per group (the kind of test: tg, pp, batch, ...)


def predicted_vs_measured(points: Sequence[Point], unit: str, caption: str) -> Figure:
    """Scatter of predicted against measured values with the y = x line, coloured by kind."""
    fig = _new(width_in=5.2, height_in=3.6)
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(p.group for p in points))
    for i, g in enumerate(groups):
        mine = [p for p in points if p.group == g]
        ax.scatter(
            [p.measured for p in mine],
            [p.predicted for p in mine],
            s=16,
            color=PALETTE[i % len(PALETTE)],
            marker=MARKERS[i % len(MARKERS)],
            zorder=3,
            label=g,
        )
    values = [v for p in points for v in (p.measured, p.predicted)]
    lo, hi = min(values) * 0.8, max(values) * 1.25
    ax.plot([lo, hi], [lo, hi], color="#888888", lw=0.9, ls="--", label="PREDICTED = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax, "x")
    _plain_log_ticks(ax, "y")
    ax.set_xlabel(f"measured ({unit}, log scale)", fontsize=8.5)
    ax.set_ylabel(f"PREDICTED ({unit}, log scale)", fontsize=8.5)
    title = "Predicted vs measured"
    ax.set_title(title, fontsize=10, fontweight="bold")
    _style_axes(ax)
    _legend(ax)
    return _png(fig, title, caption, "each point one configuration; on the dashed line = exact")
