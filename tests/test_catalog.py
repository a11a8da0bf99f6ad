"""models.toml: the shipped catalog, strict validation with file:line errors, user overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fitbench.core import paths
from fitbench.core.model import catalog
from fitbench.core.model.catalog import CatalogError

MODEL = """
schema = 1

[[models]]
id = "tiny"
name = "Tiny"
kind = "dense"
repo = "org/tiny-GGUF"
default_quant = "Q4_K_M"

[models.arch]
architecture = "llama"
n_layer = 2
n_embd = 64
n_ff = 128
n_head = 4
n_head_kv = 2
n_vocab = 256

[[models.quants]]
quant = "Q4_K_M"
file = "tiny.Q4_K_M.gguf"
size = 1000

[[models.quants]]
quant = "Q8_0"
file = "tiny.Q8_0.gguf"
size = 2000
"""

QUANTS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str, nth: int = 0) -> int:
    lines = [
        i + 1
        for i, line in enumerate(text.splitlines())
        if (line.startswith(needle) if " = " in needle else needle in line)
    ]
    return lines[nth]


def test_shipped_catalog_has_both_models_with_every_quant() -> None:
    cat = catalog.load()
    mixtral = cat.get("mixtral-8x7b-instruct")
    llama = cat.get("llama-2-70b-chat")
    assert mixtral.arch.is_moe and mixtral.arch.n_expert == 8 and mixtral.arch.n_expert_used == 2
    assert not llama.arch.is_moe and llama.arch.n_layer == 80
    for model in (mixtral, llama):
        assert tuple(q.quant for q in model.quants) == QUANTS
        assert model.quant(model.default_quant).quant == "Q4_K_M"
        assert model.mmlu is not None and model.mt_bench is not None and model.quality_source
    assert mixtral.quant("q4_k_m").size == 28_446_410_624 and mixtral.quant("Q4_K_M").size_exact
    # TheBloke's 70B Q6_K and Q8_0 exceed the Hub's 50 GB file limit: two concatenated parts
    for name in ("Q6_K", "Q8_0"):
        q = llama.quant(name)
        assert q.is_joined and not q.is_sharded
        assert q.remote_files == (f"{q.file}-split-a", f"{q.file}-split-b")
    assert llama.quant("Q4_K_M").remote_files == ("llama-2-70b-chat.Q4_K_M.gguf",)
    assert not llama.quant("Q2_K").size_exact and llama.quant("Q2_K").size == 29_280_000_000


def test_unknown_quant_and_model_name_the_known_ones() -> None:
    cat = catalog.load()
    with pytest.raises(CatalogError, match=r"known: .*llama-2-70b-chat"):
        cat.get("gpt-5")
    with pytest.raises(CatalogError, match=r"no quant 'Q3_K_S'.*Q4_K_M"):
        cat.get("llama-2-70b-chat").quant("Q3_K_S")


def test_minimal_catalog_loads(tmp_path: Path) -> None:
    (model,) = catalog.load_file(_write(tmp_path, MODEL))
    assert model.id == "tiny" and model.quant("Q8_0").size == 2000
    assert model.arch.n_expert == 0 and model.revision == "main"


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ('kind = "dense"', 'kind = "dense"\nkindd = "moe"', "kindd", r"unknown key 'kindd'"),
        ("n_layer = 2", 'n_layer = "2"', "n_layer", r"'n_layer' must be an integer, not '2'"),
        ("n_layer = 2", "n_layer = true", "n_layer", r"'n_layer' must be an integer"),
        ("size = 2000", "size = 2.5", "size = 2.5", r"'size' must be an integer"),
        ("size = 2000", "sizee = 2000", "sizee", r"quant 'Q8_0': unknown key 'sizee'"),
        ('file = "tiny.Q8_0.gguf"', 'file = "../x"', "../x", r"'\.\./x' contains '\.\.'"),
        ('file = "tiny.Q8_0.gguf"', 'file = "/etc/passwd"', "passwd", r"absolute path"),
        ('file = "tiny.Q8_0.gguf"', 'file = "a\\\\b.gguf"', "a\\\\b", r"backslash"),
        ('file = "tiny.Q8_0.gguf"', 'file = "C:x.gguf"', "C:x", r"absolute path"),
        ('file = "tiny.Q8_0.gguf"', 'file = "sub/../../x.gguf"', "sub/", r"contains '\.\.'"),
        ('default_quant = "Q4_K_M"', 'default_quant = "Q5_K_M"', "default_quant", r"not one of"),
        ('repo = "org/tiny-GGUF"', 'repo = "../evil"', "repo =", r"'owner/name'"),
        ('kind = "dense"', 'kind = "sparse"', "kind =", r"'kind' must be one of"),
        ('quant = "Q8_0"', 'quant = "Q4_K_M"', 'quant = "Q4_K_M"', r"listed twice"),
    ],
)
def test_invalid_entries_name_file_and_line(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    text = MODEL.replace(old, new, 1) if old != 'quant = "Q8_0"' else _replace_last(MODEL, old, new)
    path = _write(tmp_path, text)
    with pytest.raises(CatalogError, match=message) as err:
        catalog.load_file(path)
    nth = 1 if needle == 'quant = "Q4_K_M"' else 0
    expected_line = _line_of(text, needle, nth)
    assert str(err.value).startswith(f"{path}:{expected_line}: "), str(err.value)


def _replace_last(text: str, old: str, new: str) -> str:
    head, _, tail = text.rpartition(old)
    return head + new + tail


def test_missing_required_key_and_missing_default_quant(tmp_path: Path) -> None:
    text = MODEL.replace('default_quant = "Q4_K_M"\n', "")
    with pytest.raises(CatalogError, match=r"required key 'default_quant' is missing"):
        catalog.load_file(_write(tmp_path, text))


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    body = MODEL.split("schema = 1", 1)[1]
    text = MODEL + body
    path = _write(tmp_path, text)
    with pytest.raises(CatalogError, match=r"duplicate model id 'tiny'") as err:
        catalog.load_file(path)
    second, first = _line_of(text, 'id = "tiny"', 1), _line_of(text, 'id = "tiny"', 0)
    assert str(err.value).startswith(f"{path}:{second}: ")
    assert f"first defined at line {first}" in str(err.value)


def test_inline_quant_tables_and_parts_are_checked(tmp_path: Path) -> None:
    head, arch = MODEL.split("[[models.quants]]")[0].split("[models.arch]")
    inline = (
        'quants = [{ quant = "Q4_K_M", file = "t.gguf", size = 1 },\n'
        '  { quant = "Q6_K", file = "t.Q6_K.gguf", parts = ["t.gguf-split-a", "t.bin"] }]\n'
    )
    text = head + inline + "\n[models.arch]" + arch
    path = _write(tmp_path, text)
    with pytest.raises(CatalogError, match=r"'parts' must all be") as err:
        catalog.load_file(path)
    assert str(err.value).startswith(f"{path}:{_line_of(text, 'parts')}: ")


def test_not_toml_and_wrong_schema(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"not valid TOML"):
        catalog.load_file(_write(tmp_path, "[[models]\nid="))
    with pytest.raises(CatalogError, match=r"schema 2 is not supported") as err:
        catalog.load_file(_write(tmp_path, MODEL.replace("schema = 1", "schema = 2")))
    assert f"{tmp_path / 'models.toml'}:2: " in str(err.value)
    with pytest.raises(CatalogError, match=r"unknown top-level key 'modles'"):
        catalog.load_file(_write(tmp_path, "modles = []\n"))


def test_user_catalog_extends_and_overrides_the_shipped_one() -> None:
    user = paths.config_dir() / "models.toml"
    override = MODEL.replace('id = "tiny"', 'id = "llama-2-70b-chat"').replace(
        'name = "Tiny"', 'name = "My 70B"'
    )
    extra = MODEL.split("schema = 1", 1)[1]
    user.write_text(override + extra, encoding="utf-8")
    cat = catalog.load()
    assert cat.get("llama-2-70b-chat").name == "My 70B"
    assert cat.get("tiny").repo == "org/tiny-GGUF"
    assert "mixtral-8x7b-instruct" in cat.ids


def test_broken_user_catalog_is_named(tmp_path: Path) -> None:
    user = paths.config_dir() / "models.toml"
    user.write_text(MODEL.replace("n_ff = 128", "n_ff = 'x'"), encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(str(user)) + r":\d+: .*'n_ff'"):
        catalog.load()
