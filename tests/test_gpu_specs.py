"""The shipped GPU table and its lookups (core/hardware/gpu_specs.py, gpus.toml)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fitbench.core.hardware.gpu_specs import (
    GIB,
    UNVERIFIED,
    GpuTableError,
    MeasuredFigures,
    UnknownGpuError,
    cards_with_at_least,
    from_nvml_name,
    gpu_table,
    load_table,
    lookup,
    normalize,
    parse_gpu_spec,
    parse_table,
    speed_ratios,
)

FIELDS = {"vram", "bandwidth", "fp16_tensor", "pcie", "tdp", "nvlink", "compute_capability"}


def test_every_row_parses_with_positive_figures_and_a_source() -> None:
    table = gpu_table()
    assert len(table) >= 55
    for spec in table:
        assert spec.vram_bytes > 0 and spec.bandwidth_gbs > 0, spec.name
        assert spec.fp16_tensor_tflops is None or spec.fp16_tensor_tflops > 0, spec.name
        assert spec.source, spec.name
        assert spec.vendor_page.startswith("https://"), spec.name
        # a row is "unverified" exactly when nothing of it was checked, and says so
        assert (spec.source == UNVERIFIED) == (not spec.checked), spec.name
        assert set(spec.checked) <= FIELDS, spec.name
        assert bool(spec.checked) == bool(spec.checked_at), spec.name
        assert spec.fp16_basis, spec.name
        assert spec.pcie_gbs is not None and spec.pcie_gbs > 0, spec.name
        assert spec.compute_capability.replace(".", "").isdigit(), spec.name


def test_the_families_the_issue_names_are_all_there() -> None:
    names = {spec.name for spec in gpu_table()}
    for wanted in (
        "GeForce RTX 2080 Ti",
        "GeForce RTX 3060 12GB",
        "GeForce RTX 3080 12GB",
        "GeForce RTX 4060 Ti 16GB",
        "GeForce RTX 4070 Ti Super",
        "GeForce RTX 5060 Ti 16GB",
        "GeForce RTX 5090",
        "RTX A6000",
        "RTX 6000 Ada",
        "RTX PRO 6000 Blackwell",
        "Tesla T4",
        "L4",
        "L40S",
        "Tesla V100 SXM2 32GB",
        "A10",
        "A100 PCIe 40GB",
        "A100 SXM4 80GB",
        "H100 PCIe",
        "H100 SXM",
        "H100 NVL",
        "H200 SXM",
    ):
        assert wanted in names


def test_aliases_are_unique_across_rows() -> None:
    owner: dict[str, str] = {}
    for spec in gpu_table():
        for alias in {normalize(a) for a in (spec.name, *spec.aliases)}:
            assert alias not in owner, f"{alias!r}: {owner.get(alias)} and {spec.name}"
            owner[alias] = spec.name


def test_a_table_whose_alias_names_two_cards_is_refused(tmp_path: Path) -> None:
    row = """
[[gpu]]
name = "{name}"
aliases = ["Same"]
nvml_names = []
architecture = "Ada Lovelace"
compute_capability = "8.9"
form_factor = "PCIe card"
vram_gib = 24
memory_type = "GDDR6X"
bandwidth_gbs = 1008
fp16_tensor_tflops = 330.3
fp32_accumulate_half_rate = true
pcie_gen = 4
pcie_lanes = 16
source = "unverified"
vendor_page = "https://example.invalid/"
checked = []
checked_at = []
"""
    path = tmp_path / "gpus.toml"
    path.write_text(row.format(name="Card A"), "utf-8")
    assert [s.name for s in load_table(path)] == ["Card A"]
    path.write_text(row.format(name="Card A") + row.format(name="Card B"), "utf-8")
    with pytest.raises(GpuTableError, match="names both"):
        load_table(path)
    with pytest.raises(GpuTableError, match="positive"):
        parse_table(row.format(name="Card A").replace("bandwidth_gbs = 1008", "bandwidth_gbs = 0"))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("RTX 4090", "GeForce RTX 4090"),
        ("4090", "GeForce RTX 4090"),
        ("rtx4090", "GeForce RTX 4090"),
        ("GeForce RTX 4090", "GeForce RTX 4090"),
        ("  nvidia geforce rtx-4090 ", "GeForce RTX 4090"),
        ("H100 SXM", "H100 SXM"),
        ("H100", "H100 SXM"),
        ("h100 pcie", "H100 PCIe"),
        ("A100 80GB", "A100 SXM4 80GB"),
        ("A100 80GB PCIe", "A100 PCIe 80GB"),
        ("3060", "GeForce RTX 3060 12GB"),
        ("RTX 3080 12GB", "GeForce RTX 3080 12GB"),
        ("4060 Ti 16GB", "GeForce RTX 4060 Ti 16GB"),
        ("4070 ti super", "GeForce RTX 4070 Ti Super"),
        ("RTX A6000", "RTX A6000"),
        ("RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("RTX PRO 6000", "RTX PRO 6000 Blackwell"),
        ("T4", "Tesla T4"),
        ("L40S", "L40S"),
        ("V100 32GB", "Tesla V100 SXM2 32GB"),
        ("H200", "H200 SXM"),
    ],
)
def test_lookup_accepts_what_people_type(text: str, name: str) -> None:
    assert lookup(text).name == name


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(UnknownGpuError) as typo:
        lookup("RTX 4095")
    assert "GeForce RTX 4090" in typo.value.close_matches
    assert "GeForce RTX 4090" in str(typo.value)

    with pytest.raises(UnknownGpuError) as ambiguous:
        lookup("A100")  # four boards: the user must say which
    assert {"A100 PCIe 40GB", "A100 SXM4 40GB", "A100 PCIe 80GB", "A100 SXM4 80GB"} <= set(
        ambiguous.value.close_matches
    )

    with pytest.raises(UnknownGpuError) as nothing:
        lookup("Voodoo5 6000 PCI")
    assert "Unknown GPU 'Voodoo5 6000 PCI'" in str(nothing.value)


@pytest.mark.parametrize(
    "text", ["2x RTX 3090", "2 x RTX 3090", "2*3090", "2X rtx3090", "2 × 3090"]
)
def test_a_count_prefix_gives_that_many_cards(text: str) -> None:
    cards = parse_gpu_spec(text)
    assert [c.name for c in cards] == ["GeForce RTX 3090", "GeForce RTX 3090"]


def test_gpu_spec_parsing_singles_mixes_and_bad_counts() -> None:
    assert [c.name for c in parse_gpu_spec("RTX 4090")] == ["GeForce RTX 4090"]
    mixed = parse_gpu_spec("RTX 4090 + 2x RTX 3090")
    assert [c.name for c in mixed] == ["GeForce RTX 4090", "GeForce RTX 3090", "GeForce RTX 3090"]
    assert sum(c.vram_bytes for c in mixed) == 72 * GIB
    with pytest.raises(ValueError, match="count"):
        parse_gpu_spec("0x RTX 3090")
    with pytest.raises(UnknownGpuError):
        parse_gpu_spec("2x RTX 3095")
    with pytest.raises(UnknownGpuError):
        parse_gpu_spec("  ")


@pytest.mark.parametrize(
    ("nvml", "name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("GeForce RTX 2080 Ti", "GeForce RTX 2080 Ti"),  # older drivers drop "NVIDIA"
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("Tesla T4", "Tesla T4"),
        ("Tesla V100-SXM2-16GB", "Tesla V100 SXM2 16GB"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
    ],
)
def test_nvml_names_map_to_their_row(nvml: str, name: str) -> None:
    spec = from_nvml_name(nvml)
    assert spec is not None and spec.name == name


def test_nvml_names_shared_by_two_boards_pick_by_memory_and_unknown_cards_give_none() -> None:
    mib = 1024**2
    ten = from_nvml_name("NVIDIA GeForce RTX 3080", 10240 * mib)
    twelve = from_nvml_name("NVIDIA GeForce RTX 3080", 12288 * mib)
    assert ten is not None and ten.name == "GeForce RTX 3080 10GB"
    assert twelve is not None and twelve.name == "GeForce RTX 3080 12GB"
    sixteen = from_nvml_name("NVIDIA GeForce RTX 4060 Ti", 16380 * mib)
    assert sixteen is not None and sixteen.name == "GeForce RTX 4060 Ti 16GB"
    # the H100 SXM as the issue's machine reported it: 85.5 GB total (79.6 GiB usable)
    h100 = from_nvml_name("NVIDIA H100 80GB HBM3", 85_520_000_000)
    assert h100 is not None and h100.bandwidth_gbs == 3350
    assert from_nvml_name("NVIDIA GeForce RTX 4090 Laptop GPU") is None  # not the desktop card
    assert from_nvml_name("NVIDIA GB200") is None
    assert from_nvml_name("") is None


def test_cards_with_at_least_24_gib_start_with_the_3090_4090_class() -> None:
    cards = cards_with_at_least(24 * GIB)
    names = [c.name for c in cards]
    assert all(c.vram_bytes >= 24 * GIB for c in cards)
    smallest = [c.name for c in cards if c.vram_gib == 24]
    assert {"GeForce RTX 3090", "GeForce RTX 3090 Ti", "GeForce RTX 4090"} <= set(smallest)
    assert names[: len(smallest)] == smallest  # smallest sufficient size first ...
    speeds = [c.bandwidth_gbs for c in cards if c.vram_gib == 24]
    assert speeds == sorted(speeds, reverse=True)  # ... fastest memory first within it
    assert "GeForce RTX 4080" not in names
    assert cards[-1].vram_gib == max(c.vram_gib for c in gpu_table())
    fast = cards_with_at_least(24 * GIB, min_bandwidth_gbs=3000)
    assert {c.name for c in fast} >= {"H100 SXM", "H200 SXM"}
    assert all(c.bandwidth_gbs >= 3000 for c in fast)
    assert cards_with_at_least(10_000 * GIB) == []


def test_speed_ratios_are_target_over_reference() -> None:
    h100, rtx4090 = lookup("H100 SXM"), lookup("RTX 4090")
    ratios = speed_ratios(h100, rtx4090)
    assert ratios.bandwidth == pytest.approx(1008 / 3350)
    assert rtx4090.fp16_tensor_tflops is not None and ratios.compute is not None
    assert ratios.compute == pytest.approx(rtx4090.fp16_tensor_tflops / 989.4)
    assert ratios.pcie == pytest.approx(0.5)  # PCIe 4.0 x16 against 5.0 x16
    back = speed_ratios(rtx4090, h100)
    assert back.bandwidth * ratios.bandwidth == pytest.approx(1.0)
    assert speed_ratios(h100, h100) == (1.0, 1.0, 1.0)
    # GeForce halves its rate with FP32 accumulate; a datacenter card does not
    fp32 = speed_ratios(h100, rtx4090, fp32_accumulate=True)
    assert fp32.compute == pytest.approx(ratios.compute / 2)


def test_speed_ratios_from_measured_figures() -> None:
    here = MeasuredFigures(bandwidth_gbs=2000.0)  # no tensor or PCIe figure known
    ratios = speed_ratios(here, lookup("H200"))
    assert ratios.bandwidth == pytest.approx(2.4)
    assert ratios.compute is None and ratios.pcie is None
    # predicted tg on the target = tg measured here x the bandwidth ratio
    assert math.isclose(100.0 * ratios.bandwidth, 240.0)
    with pytest.raises(ValueError, match="positive"):
        speed_ratios(MeasuredFigures(bandwidth_gbs=0.0), lookup("H200"))
