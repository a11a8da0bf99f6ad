"""Live pyqtgraph plots of a sweep, redrawn from a GUI-thread timer (never from a worker)."""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGridLayout, QWidget

from fitbench.ui.sweep_model import Series, SweepModel

REFRESH_HZ = 20
# memory traces change with every sample (10 Hz); a repaint of a plot costs 10-30 ms on a slow
# CPU, so they are redrawn at most this often, and result plots only when a result arrived
MEMORY_REDRAW_S = 0.5
# colour-blind-safe pair (Okabe-Ito) for the two models, then more for ad-hoc models
MODEL_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


LEGEND_ROW = 4  # PlotItem's grid: title 0, top axis 1, view 2, bottom axis 3; the legend below


def _style_plot(
    plot: pg.PlotItem, title: str, x_label: str, y_label: str, legend_columns: int
) -> None:
    plot.setTitle(title, size="10pt")
    plot.setLabel("bottom", x_label)
    plot.setLabel("left", y_label)
    plot.showGrid(x=True, y=True, alpha=0.25)
    # 0.03 t/s must read as 0.03, not as "30 (x0.001)" with the multiplier cut off
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)
    # long memory traces stay cheap: draw only what is visible, keep peaks when decimating
    plot.setDownsampling(auto=True, mode="peak")
    plot.setClipToView(True)
    # the legend sits under the axis, outside the data: PlotItem.addItem still fills it
    # model names are long: one per row, so the legend never widens the plot past its cell
    legend = pg.LegendItem(colCount=legend_columns, verSpacing=-6, horSpacing=12)
    plot.layout.addItem(legend, LEGEND_ROW, 1)
    plot.legend = legend


class LivePlots(QWidget):
    """tokens/s per configuration; VRAM and RAM over time; tg vs offload; throughput vs batch."""

    def __init__(self, model: SweepModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._drawn_version = -1
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.views: list[pg.PlotWidget] = []
        specs = (
            ("Tokens/s per configuration (≈: predicted full model)", "", "tokens/s"),
            ("Memory over time", "time (s)", "memory (GiB)"),
            ("Generation vs GPU offload", "layers on the GPU (%)", "generation (tokens/s)"),
            (
                "Aggregate throughput vs parallel sequences",
                "parallel sequences B",
                "all sequences (tokens/s)",
            ),
        )
        for i, (title, x_label, y_label) in enumerate(specs):
            view = pg.PlotWidget()
            view.setMinimumHeight(200)
            _style_plot(view.getPlotItem(), title, x_label, y_label, 2 if i < 2 else 1)
            layout.addWidget(view, i // 2, i % 2)
            self.views.append(view)
        self.speed_plot, self.memory_plot, self.offload_plot, self.batch_plot = (
            v.getPlotItem() for v in self.views
        )
        self.pp_bars = pg.BarGraphItem(x=[], height=[], width=0.38, brush=MODEL_COLOURS[2])
        self.tg_bars = pg.BarGraphItem(x=[], height=[], width=0.38, brush=MODEL_COLOURS[1])
        self.speed_plot.addItem(self.pp_bars)
        self.speed_plot.addItem(self.tg_bars)
        legend = self.speed_plot.legend
        if legend is not None:
            legend.addItem(self.pp_bars, "prompt (pp)")
            legend.addItem(self.tg_bars, "generation (tg)")
        self.ram_curve = self.memory_plot.plot(
            [], [], name="RAM (worker RSS)", pen=pg.mkPen(width=2)
        )
        self.vram_curve = self.memory_plot.plot(
            [], [], name="VRAM (all GPUs)", pen=pg.mkPen(MODEL_COLOURS[0], width=2)
        )
        # the share of layers on the GPU is 0-100 % whatever was measured
        self.offload_plot.setXRange(0, 100, padding=0.05)
        self.offload_plot.enableAutoRange(axis="x", enable=False)
        self._model_curves: dict[tuple[int, str], pg.PlotDataItem] = {}
        self._results_drawn: tuple[int, int] = (-1, -1)
        self._pending: set[str] = set()
        self._samples_drawn = -1
        self._samples_drawn_at = 0.0
        self._apply_palette()
        self.timer = QTimer(self)
        self.timer.setInterval(1000 // REFRESH_HZ)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        """Follow the system's light/dark palette instead of pyqtgraph's fixed black."""
        pal = self.palette()
        bg = pal.color(QPalette.ColorRole.Base)
        fg = pal.color(QPalette.ColorRole.Text)
        for view in self.views:
            view.setBackground(bg)
            item = view.getPlotItem()
            for axis in ("left", "bottom"):
                ax = item.getAxis(axis)
                ax.setPen(fg)
                ax.setTextPen(fg)
            item.titleLabel.setText(item.titleLabel.text, color=QColor(fg).name())
            if item.legend is not None:
                item.legend.setLabelTextColor(fg)
        self.ram_curve.setPen(pg.mkPen(fg, width=2))

    def refresh(self) -> None:
        """Timer-driven, GUI thread: redraw only the plots whose data changed."""
        if self.model.version == self._drawn_version:
            return
        self._drawn_version = self.model.version
        results = (len(self.model.records), len(self.model.rows))
        if results != self._results_drawn:
            self._results_drawn = results
            self._pending.update(("speed", "offload", "batch"))
        if self._pending:
            # one plot per tick: each repaint then stays short, the next follows 50 ms later
            self._draw_results(self._pending.pop())
            self._drawn_version = -1
            return
        now = time.monotonic()
        n_samples = len(self.model.t)
        if n_samples != self._samples_drawn and (
            now - self._samples_drawn_at >= MEMORY_REDRAW_S or self.model.finished is not None
        ):
            self._samples_drawn, self._samples_drawn_at = n_samples, now
            self.ram_curve.setData(self.model.t, self.model.ram_gib)
            if any(self.model.vram_gib):
                self.vram_curve.setData(self.model.t, self.model.vram_gib)
        else:
            self._drawn_version = -1  # samples still to draw: look again on the next tick

    def _draw_results(self, which: str) -> None:
        if which == "offload":
            self._set_curves(self.offload_plot, 0, self.model.tg_vs_offload())
            return
        if which == "batch":
            self._set_curves(self.batch_plot, 1, self.model.throughput_vs_batch())
            return
        labels, pp, tg = self.model.ts_per_config()
        xs = list(range(len(labels)))
        self.pp_bars.setOpts(x=[x - 0.2 for x in xs], height=pp)
        self.tg_bars.setOpts(x=[x + 0.2 for x in xs], height=tg)
        axis = self.speed_plot.getAxis("bottom")
        # the configurations by name; several configurations of one model share its name
        axis.setTicks([[(x, label) for x, label in zip(xs, labels, strict=True)]])
        if xs:
            self.speed_plot.setXRange(-0.6, len(xs) - 0.4, padding=0)
        self.speed_plot.getViewBox().setToolTip(self.model.speed_tooltip())

    def _set_curves(self, plot: pg.PlotItem, key: int, curves: dict[str, Series]) -> None:
        for name, series in curves.items():
            curve = self._model_curves.get((key, name))
            if curve is None:
                colour = MODEL_COLOURS[
                    sum(1 for k in self._model_curves if k[0] == key) % len(MODEL_COLOURS)
                ]
                # scaled-twin points are noisy predictions, one per measurement: points only,
                # hollow, no line suggesting a trend
                scaled = self.model.is_scaled_label(name)
                curve = plot.plot(
                    [],
                    [],
                    name=name,
                    pen=None if scaled else pg.mkPen(colour, width=2),
                    symbol="o",
                    symbolPen=pg.mkPen(colour, width=2),
                    symbolBrush=None if scaled else colour,
                    symbolSize=9 if scaled else 7,
                )
                self._model_curves[(key, name)] = curve
            curve.setData(series.xs, series.ys)

    def clear(self) -> None:
        for (key, _name), curve in list(self._model_curves.items()):
            (self.offload_plot if key == 0 else self.batch_plot).removeItem(curve)
            legend = (self.offload_plot if key == 0 else self.batch_plot).legend
            if legend is not None:
                legend.removeItem(curve)
        self._model_curves.clear()
        self._drawn_version = -1
        self._results_drawn = (-1, -1)
        self._pending.clear()
        self._samples_drawn = -1
