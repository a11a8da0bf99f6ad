"""Report section 4: results tables and figures, all measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fitbench.core.predict.full_model import FullModelFigure, full_model_figures, is_scaled
from fitbench.core.report import figures, fmt
from fitbench.core.report.capped import MAX_ROWS, MAX_SERIES, more_note, most_relevant, thin
from fitbench.core.report.configs import (
    Config,
    Names,
    Record,
    fidelity_of,
    test_time,
    twin_caveats,
)
from fitbench.core.report.model import (
    Basis,
    Figure,
    Section,
    Table,
    basis_label,
    basis_short,
)

NOISY_SHARE = 0.10  # stddev above this share of the mean reads as an unsteady machine


SCALED_BASIS = "predicted from a scaled twin"


class Shown:
    """The numbers the report shows per configuration: what was measured, except for a scaled
    twin (a slice of a few blocks), whose figures are the full model's, predicted from the
    slice's measurement (predict.full_model); the slice's own speeds are detail only."""

    def __init__(
        self, records: Sequence[Record], hardware: dict[str, Any] | None, names: Names | None = None
    ) -> None:
        figs = full_model_figures(records, hardware)
        self._by_record = {id(r): f for r, f in zip(records, figs, strict=True)}
        self.names = names or Names()

    def figure(self, record: Record | None) -> FullModelFigure | None:
        return None if record is None else self._by_record.get(id(record))

    @staticmethod
    def scaled(c: Config) -> bool:
        return any(is_scaled(r) for r in c.records)

    def ts(self, c: Config, test: str) -> float | None:
        if not self.scaled(c):
            return c.ts(test)
        fig = self.figure(c._best(test))
        return None if fig is None or c.ts(test) is None else fig.value

    def ts_cell(self, c: Config, test: str) -> str:
        if not self.scaled(c):
            return _with_spread(c.ts(test), c.stddev_share(test))
        value, raw = self.ts(c, test), c.ts(test)
        if raw is None:
            return fmt.DASH
        shown = "no prediction" if value is None else f"≈{fmt.num(value)}"
        return f"{shown} (slice {fmt.num(raw)})"

    def batch_points(self, c: Config) -> list[tuple[int, float]]:
        if not self.scaled(c):
            return c.batch_points()
        out = []
        for r in c.records:
            fig = self.figure(r)
            if r["test"] == "batch" and fig is not None and fig.value is not None:
                out.append((int(r["n_parallel"]), fig.value))
        return sorted(dict(out).items())

    def slice_cell(self, c: Config, value: Any) -> str:
        """A latency the slice measured: detail only, the full model's would be longer."""
        text = fmt.num(value)
        return text if not self.scaled(c) or value is None else f"slice {text}"

    def basis(self, c: Config) -> Basis:
        return "predicted" if self.scaled(c) else c.basis

    def basis_cell(self, c: Config) -> str:
        """The basis, and for a twin how far the real file may be (section 6 says it in full)."""
        basis = SCALED_BASIS if self.scaled(c) else basis_short(c.basis)
        fid = fidelity_of(c, self.names)
        return basis if fid is None else f"{basis} ({fid.short})"


def _label(c: Config, names: Names, shown: Shown | None = None) -> str:
    what = SCALED_BASIS if shown is not None and shown.scaled(c) else basis_short(c.basis)
    return f"{names.name(c.model_id)} {c.quant} ({what})"


CONFIG_HEADERS = ("Model", "Quant", "Basis", "Placement")  # the first columns of every table


def config_cells(c: Config, names: Names, shown: Shown | None = None) -> tuple[str, str, str, str]:
    basis = shown.basis_cell(c) if shown is not None else basis_short(c.basis)
    return names.name(c.model_id), c.quant, basis, placement_of(c)


def placement_of(c: Config) -> str:
    return c.placement_words


def _colour_groups(configs: Sequence[Config], names: Names) -> dict[str, int]:
    """MoE first, so Mixtral keeps the same colour in every figure."""
    ids = sorted({c.model_id for c in configs}, key=lambda m: (not names.is_moe(m), m))
    return {m: i for i, m in enumerate(ids)}


def _with_spread(value: float | None, share: float | None) -> str:
    if value is None:
        return fmt.DASH
    return fmt.num(value) if share is None else f"{fmt.num(value)} ±{share * 100:.0f}%"


# -- 4. results ----------------------------------------------------------------------------------


def results_section(
    records: Sequence[Record],
    configs: Sequence[Config],
    names: Names,
    advice: dict[str, Any] | None,
    samples: Sequence[dict[str, Any]] | None,
    hardware: dict[str, Any] | None = None,
) -> Section:
    s = Section("4. Results")
    shown = Shown(records, hardware, names)
    s.para(
        "All numbers in this section were measured; the Basis column says on what. Speeds are "
        "the mean over the repetitions, ± the standard deviation as a share of the mean. "
        "pp = prompt processing, tg = generation of one sequence, TTFT = time to first token, "
        "ITL = inter-token latency.",
        "note",
    )
    if any(shown.scaled(c) for c in configs):
        s.para(
            "A scaled twin is a slice of a few of the model's blocks; it runs many times faster "
            "than the whole model. Its rows (Basis: predicted from a scaled twin) show the full "
            "model's speed, ≈, predicted from the slice's measurement by the calibrated "
            "predictor, and the slice's own measurement in brackets. Latencies marked 'slice' "
            "are the slice's and understate the full model's.",
            "note",
        )
    caveats = twin_caveats(configs, names)
    if caveats:
        s.para(
            "Rows measured on a twin say in the Basis column how far the real file's speed may "
            "be from the twin's: " + "; ".join(caveats) + ".",
            "note",
        )
    s.add(_best_table(configs, names, shown))
    kept, hidden = most_relevant(configs, advice)
    note = more_note(hidden, len(kept))
    s.add(
        Table(
            title="Speed per configuration",
            headers=(
                *CONFIG_HEADERS,
                "pp (t/s)",
                "tg (t/s)",
                "TTFT (ms)",
                "Status",
            ),
            rows=tuple(
                (
                    *config_cells(c, names, shown),
                    shown.ts_cell(c, "pp"),
                    shown.ts_cell(c, "tg"),
                    shown.slice_cell(c, c.first("ttft_ms", ("ttft", "pp", "tg"))),
                    c.status,
                )
                for c in kept
            ),
            weights=(2.6, 1.0, 0.8, 2.6, 1.3, 1.3, 1.0, 0.8),
            numeric=(False, False, False, False, True, True, True, False),
            note=note,
        )
    )
    s.add(
        Table(
            title="Latency and memory per configuration",
            headers=(
                *CONFIG_HEADERS,
                "ITL p50 (ms)",
                "ITL p95 (ms)",
                "ITL p99 (ms)",
                "VRAM peak (GiB)",
                "RAM peak (GiB)",
            ),
            rows=tuple(
                (
                    *config_cells(c, names, shown),
                    shown.slice_cell(c, c.first("itl_ms_p50", ("tg", "ttft", "batch"))),
                    shown.slice_cell(c, c.first("itl_ms_p95", ("tg", "ttft", "batch"))),
                    shown.slice_cell(c, c.first("itl_ms_p99", ("tg", "ttft", "batch"))),
                    fmt.gib_bare(c.peak("vram_peak_bytes")),
                    fmt.gib_bare(c.peak("ram_peak_bytes")),
                )
                for c in kept
            ),
            weights=(2.5, 1.0, 0.8, 2.4, 0.95, 0.95, 0.95, 1.0, 1.0),
            numeric=(False, False, False, False, True, True, True, True, True),
            note=note,
        )
    )
    # a configuration contributes one row per batch size (at most 7): fewer configurations
    with_batch, hidden = most_relevant(
        configs, advice, MAX_ROWS // 4, lambda c: bool(shown.batch_points(c))
    )
    batch_rows = [
        (
            *config_cells(c, names, shown),
            str(b),
            f"≈{fmt.num(v)}" if shown.scaled(c) else fmt.num(v),
        )
        for c in with_batch
        for b, v in shown.batch_points(c)
    ]
    if batch_rows:
        s.add(
            Table(
                title="Parallel sequences: aggregate generation throughput",
                headers=(*CONFIG_HEADERS, "B", "Aggregate (t/s)"),
                rows=tuple(batch_rows),
                weights=(2.4, 1.1, 0.9, 2.6, 0.6, 1.4),
                numeric=(False, False, False, False, True, True),
                note=more_note(hidden, len(with_batch), "configurations with batch tests"),
            )
        )
    with_depth, hidden = most_relevant(
        configs, advice, MAX_ROWS // 4, lambda c: any(r["test"] == "depth" for r in c.records)
    )
    depth_rows = [
        (
            *config_cells(c, names, shown),
            str(r["n_depth"]),
            _depth_cell(r, shown.figure(r)),
        )
        for c in with_depth
        for r in sorted(c.records, key=lambda r: r["n_depth"])
        if r["test"] == "depth" and r["status"] == "ok"
    ]
    if depth_rows:
        s.add(
            Table(
                title="Speed with a filled KV cache",
                headers=(*CONFIG_HEADERS, "Depth (tokens)", "Speed (t/s)"),
                rows=tuple(depth_rows),
                weights=(2.4, 1.1, 0.9, 2.6, 1.1, 1.1),
                numeric=(False, False, False, False, True, True),
                note=more_note(hidden, len(with_depth), "configurations with depth tests"),
            )
        )
    everything_failed = [(c, r) for c in configs for r in c.errors]
    # the most recent failures: an old one was most likely fixed or re-run since
    recent = sorted(
        enumerate(everything_failed), key=lambda i_cr: str(i_cr[1][1]["test_time"]), reverse=True
    )[:MAX_ROWS]
    failed = [cr for _, cr in sorted(recent, key=lambda i_cr: i_cr[0])]
    if failed:
        s.add(
            Table(
                title="Tests that did not finish",
                headers=("Model", "Quant", "Placement", "Test", "Status", "What happened"),
                rows=tuple(
                    (
                        names.name(c.model_id),
                        c.quant,
                        placement_of(c),
                        r["test"],
                        r["status"],
                        r["error"] or fmt.DASH,
                    )
                    for c, r in failed
                ),
                weights=(2.0, 1.0, 2.2, 0.7, 0.9, 4.0),
                note=(
                    f"The {len(failed)} most recent of {len(everything_failed)} tests that did "
                    "not finish; the others are in the attached raw results."
                    if len(everything_failed) > len(failed)
                    else ""
                ),
            )
        )
    groups = _colour_groups(configs, names)
    for fig in (
        _tg_figure(configs, names, groups, shown),
        _batch_figure(configs, names, groups, shown),
        _memory_figure(records, samples),
        _advantage_figure(configs, names, advice, shown),
    ):
        if isinstance(fig, str):
            s.para(fig, "note")
        else:
            s.add(fig)
    return s


def _depth_cell(record: Record, fig: FullModelFigure | None) -> str:
    if not is_scaled(record):
        return fmt.num(record["avg_ts"])
    shown = "no prediction" if fig is None or fig.value is None else f"≈{fmt.num(fig.value)}"
    return f"{shown} (slice {fmt.num(record['avg_ts'])})"


def _best_table(configs: Sequence[Config], names: Names, shown: Shown) -> Table:
    best: dict[str, Config | None] = {}
    for c in configs:
        speed_c = shown.ts(c, "tg")
        known = best.get(c.model_id)
        if speed_c is not None and (known is None or speed_c > (shown.ts(known, "tg") or 0.0)):
            best[c.model_id] = c
        else:
            best.setdefault(c.model_id, None)

    def speed(model_id: str) -> float:
        config = best[model_id]
        return (shown.ts(config, "tg") or 0.0) if config else 0.0

    # a file of many models: the fastest MAX_ROWS, in the usual order
    keep = set(sorted(best, key=lambda m: -speed(m))[:MAX_ROWS])
    rows = []
    for model_id, fastest in best.items():
        if model_id not in keep:
            continue
        if fastest is None:
            rows.append((names.name(model_id), fmt.DASH, fmt.DASH, fmt.DASH, "no tg test finished"))
            continue
        basis = basis_label(fastest.basis)
        tg = fmt.ts(shown.ts(fastest, "tg"))
        if shown.scaled(fastest):
            fig = shown.figure(fastest._best("tg"))
            tg = f"≈{tg}"
            basis = "predicted for the full model" + (f" ({fig.detail})" if fig else "")
        rows.append((names.name(model_id), fastest.quant, fastest.placement_words, tg, basis))
    hidden = len(best) - len(keep)
    return Table(
        title="Fastest generation per model (measured, or ≈ predicted from a scaled twin)",
        headers=("Model", "Quant", "Placement", "tg", "Basis"),
        rows=tuple(rows),
        weights=(2.6, 1.1, 2.8, 1.3, 2.2),
        numeric=(False, False, False, True, False),
        font_size=8.5,
        note=f"The {len(keep)} fastest of {len(best)} models." if hidden else "",
    )


def _tg_figure(
    configs: Sequence[Config], names: Names, groups: dict[str, int], shown: Shown
) -> Figure | str:
    lines: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    first: dict[tuple[str, str, str], Config] = {}
    for c in configs:
        key = (c.model_id, c.quant, c.source)
        first.setdefault(key, c)
        tg = shown.ts(c, "tg")
        if tg is not None and c.n_cpu_moe == 0:
            lines.setdefault(key, []).append((c.gpu_share, tg))
    if not lines:
        return "No generation (tg) test finished, so there is no offload figure."
    if len(lines) > MAX_SERIES:  # the lines that reach the highest speeds
        fastest = sorted(lines, key=lambda k: -max(tg for _, tg in lines[k]))[:MAX_SERIES]
        lines = {k: v for k, v in lines.items() if k in fastest}
    series = []
    for key, pts in lines.items():
        pts.sort()
        c0, model_id = first[key], key[0]
        series.append(
            figures.Series(
                label=_label(c0, names, shown),
                x=tuple(p[0] for p in pts),
                y=tuple(p[1] for p in pts),
                basis=shown.basis(c0),
                group=groups[model_id],
            )
        )
    return figures.tg_vs_offload(
        series,
        "Batch-1 generation speed as more layers move to the GPU; 100% = every layer and the "
        "output on the GPU. Measured; the legend says whether on real files or twins, and "
        "hollow markers are full-model speeds predicted from a scaled twin. Placements "
        "with experts kept on the CPU are in the tables above.",
    )


def _batch_figure(
    configs: Sequence[Config], names: Names, groups: dict[str, int], shown: Shown
) -> Figure | str:
    with_batch = [c for c in configs if shown.batch_points(c)]
    if not with_batch:
        return "No parallel-sequence (batch) test finished, so there is no batch figure."
    if len(with_batch) > MAX_SERIES:  # the configurations with the highest throughput
        best = sorted(with_batch, key=lambda c: -max(v for _, v in shown.batch_points(c)))
        chosen = {id(c) for c in best[:MAX_SERIES]}
        with_batch = [c for c in with_batch if id(c) in chosen]
    per_model: dict[str, int] = {}
    for c in with_batch:
        per_model[c.model_id] = per_model.get(c.model_id, 0) + 1
    series = []
    for c in with_batch:
        pts = shown.batch_points(c)
        label = _label(c, names, shown)
        if per_model[c.model_id] > 1:
            label += f", {placement_of(c)}"
        series.append(
            figures.Series(
                label,
                tuple(float(b) for b, _ in pts),
                tuple(v for _, v in pts),
                shown.basis(c),
                groups[c.model_id],
            )
        )
    return figures.throughput_vs_batch(
        series,
        "Total generated tokens per second across B parallel sequences. An MoE layer touches up "
        "to min(8, 2B) experts, so its advantage over a dense model shrinks as B grows. Measured; "
        "hollow markers are full-model speeds predicted from a scaled twin.",
    )


def _seconds_since(records: Sequence[Record]) -> list[tuple[float, Record]]:
    stamped = [(when, r) for r in records if (when := test_time(r)) is not None]
    if not stamped:
        return []
    t0 = min(t for t, _ in stamped)
    return sorted((((t - t0).total_seconds(), r) for t, r in stamped), key=lambda p: p[0])


def _memory_figure(
    records: Sequence[Record], samples: Sequence[dict[str, Any]] | None
) -> Figure | str:
    if samples:
        pts = thin(sorted(samples, key=lambda p: float(p.get("t_s", 0.0))))
        return figures.memory_over_time(
            [float(p.get("t_s", 0.0)) for p in pts],
            [p.get("vram_bytes") for p in pts],
            [p.get("ram_bytes") for p in pts],
            f"Memory sampled {len(pts)} times during the run (measured). VRAM is the sum over all "
            "GPUs as NVML reports it; RAM is the benchmark worker's resident set.",
            from_peaks=False,
        )
    timed = thin(
        [
            (t, r)
            for t, r in _seconds_since(records)
            if r["vram_peak_bytes"] is not None or r["ram_peak_bytes"] is not None
        ]
    )
    if not timed:
        return "No memory was recorded during the run, so there is no memory figure."
    return figures.memory_over_time(
        [t for t, _ in timed],
        [r["vram_peak_bytes"] for _, r in timed],
        [r["ram_peak_bytes"] for _, r in timed],
        "Peak memory of each test, placed at the time the test started (measured). No "
        "continuous memory samples were saved with these results.",
        from_peaks=True,
    )


def _ratio_basis(a: Config, b: Config, shown: Shown | None = None) -> Basis:
    if shown is not None and (shown.scaled(a) or shown.scaled(b)):
        return "predicted"
    return "measured-real" if a.basis == b.basis == "measured-real" else "measured-twin"


def measured_advantage(
    configs: Sequence[Config], names: Names, shown: Shown | None = None
) -> tuple[list[figures.RatioPoint], list[figures.RatioPoint]]:
    """MoE tg ÷ dense tg where both were measured at the same batch size or GPU share."""
    # the first MoE and the first dense configuration (in report order) at each batch size and
    # GPU share: a pass over each side, not one over every pair
    moe = [c for c in configs if names.is_moe(c.model_id) and not c.n_cpu_moe]
    dense = [c for c in configs if not names.is_moe(c.model_id) and not c.n_cpu_moe]
    dense_at_batch: dict[int, tuple[Config, float]] = {}
    dense_at_share: dict[float, tuple[Config, float]] = {}

    def points(c: Config) -> list[tuple[int, float]]:
        return shown.batch_points(c) if shown else c.batch_points()

    def tg(c: Config) -> float | None:
        return shown.ts(c, "tg") if shown else c.ts("tg")

    for d in dense:
        for b, v in points(d):
            if v > 0:
                dense_at_batch.setdefault(b, (d, v))
        if dt := tg(d):
            dense_at_share.setdefault(float(round(d.gpu_share)), (d, dt))
    by_batch: dict[float, figures.RatioPoint] = {}
    by_offload: dict[float, figures.RatioPoint] = {}
    for m in moe:
        for b, v in points(m):
            if b in dense_at_batch and float(b) not in by_batch:
                d, dv = dense_at_batch[b]
                by_batch[float(b)] = figures.RatioPoint(float(b), v / dv, _ratio_basis(m, d, shown))
        x = float(round(m.gpu_share))
        mt = tg(m)
        if mt and x in dense_at_share and x not in by_offload:
            d, dt = dense_at_share[x]
            by_offload[x] = figures.RatioPoint(x, mt / dt, _ratio_basis(m, d, shown))
    return sorted(by_batch.values(), key=lambda p: p.x), sorted(
        by_offload.values(), key=lambda p: p.x
    )


def gpu_share_percent(gpu_fraction: Any) -> float:
    """Percent of layers on the GPU; the contract says a 0-1 fraction, percent is tolerated."""
    frac = float(gpu_fraction or 0.0)
    return frac * 100 if frac <= 1.0 else frac


def _advice_ratio_points(
    moe_vs_dense: dict[str, Any],
) -> tuple[list[figures.RatioPoint], list[figures.RatioPoint]]:
    by_batch = [
        figures.RatioPoint(float(p["batch"]), float(p["ratio"]), p.get("basis", "predicted"))
        for p in moe_vs_dense.get("by_batch") or []
        if p.get("ratio") is not None and p.get("batch") is not None
    ]
    by_offload = []
    for p in moe_vs_dense.get("by_offload") or []:
        if p.get("ratio") is None or p.get("gpu_fraction") is None:
            continue
        by_offload.append(
            figures.RatioPoint(
                gpu_share_percent(p["gpu_fraction"]), float(p["ratio"]), p.get("basis", "predicted")
            )
        )
    return by_batch, by_offload


def _advantage_figure(
    configs: Sequence[Config], names: Names, advice: dict[str, Any] | None, shown: Shown
) -> Figure | str:
    moe_vs_dense = (advice or {}).get("moe_vs_dense") or {}
    by_batch, by_offload = _advice_ratio_points(moe_vs_dense)
    source = "the advice"
    if not by_batch and not by_offload:
        by_batch, by_offload = measured_advantage(configs, names, shown)
        source = "the measurements"
    if not by_batch and not by_offload:
        return (
            "The MoE and the dense model were not measured at matching settings, so there is "
            "no advantage-ratio figure."
        )
    verdict = moe_vs_dense.get("verdict") or ""
    return figures.moe_advantage(
        by_batch,
        by_offload,
        f"Mixtral's generation speed divided by Llama 2 70B's at the same settings, from {source}. "
        "Above 1 the MoE is faster. Filled markers: measured; hollow markers on dashed lines: "
        f"PREDICTED. {verdict}".strip(),
    )
