"""Result records grouped into what a reader thinks of as one configuration.

A configuration is one model file at one placement; its pp, tg, ttft, batch and depth tests are
separate records. Grouping is by content (model, quant, file, placement), not by config_id, so the
same placement measured in two runs reads as one row with the latest numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fitbench.core.plan.placement import Placement, record_n_layer
from fitbench.core.report.model import Basis, ReportError, basis_of_source
from fitbench.core.twin.fidelity import Fidelity, record_fidelity, widest

Record = dict[str, Any]

# worst first: the status a configuration shows when its tests ended differently
STATUS_SEVERITY = ("crash", "oom", "killed", "error", "timeout", "cancelled", "ok")


@dataclass
class Names:
    """Catalog facts the report needs per model id, with fallbacks for ad-hoc files."""

    names: dict[str, str] = field(default_factory=dict)
    moe: dict[str, bool] = field(default_factory=dict)
    architecture: dict[str, str] = field(default_factory=dict)  # llama.cpp's, e.g. "llama"

    def name(self, model_id: str) -> str:
        return self.names.get(model_id, model_id or "unnamed model")

    def is_moe(self, model_id: str) -> bool:
        if model_id in self.moe:
            return self.moe[model_id]
        return "mixtral" in model_id.lower() or "moe" in model_id.lower()


def load_names(extra: dict[str, str] | None = None) -> Names:
    """Names from the catalog; a broken user catalog must not stop a report, so ids stand in."""
    from fitbench.core.model import catalog

    names = Names()
    cat = catalog.load_or_none()
    for m in cat.models if cat is not None else ():
        names.names[m.id] = m.name
        names.moe[m.id] = m.is_moe
        names.architecture[m.id] = m.arch.architecture
    names.names.update(extra or {})
    return names


@dataclass
class Config:
    model_id: str
    quant: str
    source: str
    file_sha256: str
    model_filename: str
    n_gpu_layers: int  # as llama.cpp took it (0..n_layer + 1) where the records say n_layer
    n_cpu_moe: int
    n_layer: int
    records: list[Record] = field(default_factory=list)

    @property
    def basis(self) -> Basis:
        return basis_of_source(self.source)

    @property
    def placement(self) -> Placement:
        return Placement(self.n_gpu_layers, self.n_cpu_moe)

    @property
    def placement_words(self) -> str:
        """For a table cell: 'all 33 layers on GPU', '16 of 33 layers on GPU', 'CPU only'."""
        return self.placement.short_words(self.n_layer)

    @property
    def gpu_share(self) -> float:
        """Layers on the GPU as a percentage of the offloadable ones (blocks + output)."""
        return self.placement.gpu_share(self.n_layer)

    def _best(self, test: str) -> Record | None:
        """The test's record: the latest ok one, the largest prompt when several sizes ran."""
        mine = [r for r in self.records if r["test"] == test and r["n_parallel"] <= 1]
        ok = [r for r in mine if r["status"] == "ok"]
        pool = ok or mine
        if not pool:
            return None
        return max(pool, key=lambda r: (r["n_prompt"], r["n_gen"], r["test_time"]))

    def ts(self, test: str) -> float | None:
        rec = self._best(test)
        return rec["avg_ts"] if rec is not None and rec["status"] == "ok" else None

    def stddev_share(self, test: str) -> float | None:
        rec = self._best(test)
        if rec is None or rec["status"] != "ok" or not rec["avg_ts"]:
            return None
        return float(rec["stddev_ts"]) / float(rec["avg_ts"])

    def first(self, name: str, prefer: Sequence[str]) -> Any:
        """A field that several tests may carry (ttft, itl): the preferred tests' value first."""
        ordered = sorted(
            (r for r in self.records if r["status"] == "ok" and r.get(name) is not None),
            key=lambda r: prefer.index(r["test"]) if r["test"] in prefer else len(prefer),
        )
        return ordered[0][name] if ordered else None

    def peak(self, name: str) -> int | None:
        values = [r[name] for r in self.records if r.get(name) is not None]
        return max(values) if values else None

    @property
    def status(self) -> str:
        statuses = {r["status"] for r in self.records}
        return next(s for s in STATUS_SEVERITY if s in statuses or s == "ok")

    @property
    def errors(self) -> list[Record]:
        return [r for r in self.records if r["status"] != "ok"]

    def batch_points(self) -> list[tuple[int, float]]:
        """(B, aggregate t/s) of the ok batch tests, latest per B."""
        latest: dict[int, Record] = {}
        for r in self.records:
            if r["test"] == "batch" and r["status"] == "ok":
                b = int(r["n_parallel"])
                if b not in latest or r["test_time"] >= latest[b]["test_time"]:
                    latest[b] = r
        return sorted((b, float(r["avg_ts"])) for b, r in latest.items())


def fidelities(c: Config, names: Names) -> list[Fidelity]:
    """How far the real file may be from each of a twin configuration's measured numbers."""
    moe = names.is_moe(c.model_id)
    found = (record_fidelity(r, moe=moe) for r in c.records if r["status"] == "ok")
    return [f for f in found if f is not None]


def fidelity_of(c: Config, names: Names) -> Fidelity | None:
    """The configuration's widest twin band: its cells share one Basis cell."""
    return widest(fidelities(c, names))


def twin_caveats(configs: Iterable[Config], names: Names) -> list[str]:
    """Every distinct twin caveat of the configurations, in their order."""
    return list(dict.fromkeys(f.text for c in configs for f in fidelities(c, names)))


def group(records: Iterable[Record]) -> list[Config]:
    configs: dict[tuple[Any, ...], Config] = {}
    for r in records:
        # a record that failed before llama.cpp loaded keeps the asked-for value (-1, 99): it is
        # the same configuration as the records of the same placement that did load
        n_layer = record_n_layer(r)
        ngl = int(r["n_gpu_layers"])
        ngl = Placement(ngl).offloaded(n_layer) if n_layer > 0 else ngl
        key = (
            r["model_id"],
            r["quant"],
            r["source"],
            r["file_sha256"],
            ngl,
            r["n_cpu_moe"],
        )
        cfg = configs.get(key)
        if cfg is None:
            cfg = configs[key] = Config(
                model_id=r["model_id"],
                quant=r["quant"],
                source=r["source"],
                file_sha256=r["file_sha256"],
                model_filename=r["model_filename"],
                n_gpu_layers=ngl,
                n_cpu_moe=r["n_cpu_moe"],
                n_layer=r["n_layer_model"],
            )
        cfg.records.append(r)
        cfg.n_layer = max(cfg.n_layer, r["n_layer_model"])
    return sorted(
        configs.values(),
        key=lambda c: (c.model_id, c.quant, c.source, c.n_cpu_moe > 0, c.n_gpu_layers, c.n_cpu_moe),
    )


def test_time(record: Record) -> datetime | None:
    """When the test started, timezone-aware (naive times are taken as UTC), or None."""
    try:
        when = datetime.fromisoformat(str(record.get("test_time") or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def single_fingerprint(records: Sequence[Record], where: str) -> str:
    """The one machine the records come from; records without a fingerprint do not count."""
    counts: dict[str, int] = {}
    for r in records:
        fp = r.get("hardware_fingerprint") or ""
        if fp:
            counts[fp] = counts.get(fp, 0) + 1
    if len(counts) > 1:
        listed = ", ".join(f"{fp} ({n} records)" for fp, n in sorted(counts.items()))
        raise ReportError(
            f"{where} mixes results from {len(counts)} different machines (hardware "
            f"fingerprints {listed}); a report describes one machine. Choose one with "
            "--fingerprint FINGERPRINT, or split the file by its hardware_fingerprint field."
        )
    return next(iter(counts), "")


def only_fingerprint(records: Sequence[Record], fingerprint: str, where: str) -> list[Record]:
    chosen = [r for r in records if r.get("hardware_fingerprint") == fingerprint]
    if not chosen:
        known = sorted({r.get("hardware_fingerprint") or "(none)" for r in records})
        raise ReportError(
            f"{where}: no records with hardware fingerprint {fingerprint!r} "
            f"(the file has: {', '.join(known)})"
        )
    return chosen
