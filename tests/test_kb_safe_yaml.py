"""The hardened YAML reader: what it refuses, and the line numbers it keeps."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmeft.errors import VlmeftError
from vlmeft.kb.safe_yaml import MAX_DEPTH, load_yaml_document, parse_yaml, safe_load_yaml


def test_plain_document_and_line_numbers():
    doc = parse_yaml("id: coop\nyear: 2022\nresults:\n  - metric: HM\n    value: 71.66\n", "f.yaml")
    assert doc.data == {"id": "coop", "year": 2022, "results": [{"metric": "HM", "value": 71.66}]}
    assert doc.line_of(("year",)) == 2
    assert doc.line_of(("results", 0, "value")) == 5
    assert doc.at(("results", 0, "missing")) == "f.yaml:4"  # falls back to the nearest ancestor
    assert doc.at(()) == "f.yaml:1"


def test_dates_stay_text():
    assert parse_yaml("d: 2022-01-31\n", "f").data == {"d": "2022-01-31"}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("a: &x 1\nb: 2\n", "anchors are not allowed"),
        ("a: 1\nb: *x\n", "aliases are not allowed"),  # an alias without anchor is refused, not a parse error
        ("a: !!python/object/apply:os.system ['true']\n", "python/object/apply:os.system"),
        ("a: !!python/name:os.system\n", "python/name:os.system"),
        ("a: !!binary aGVsbG8=\n", "binary"),
        ("a: !custom 1\n", "'!custom' is not allowed"),
        ("a: !!set {x, y}\n", "set"),
        ("<<: {a: 1}\n", "merge keys"),
        ("? [1, 2]\n: x\n", "keys must be plain strings"),
        ("1: x\n", "keys must be plain strings"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: 1\n---\nb: 2\n", "one YAML document per file"),
        ("a: [1, 2\n", "malformed YAML"),
        ("a: \x07\n", "U+0007"),
        ("# only a comment\n", "no YAML document"),
        ("   \n\n", "empty"),
    ],
)
def test_refused(text, fragment):
    with pytest.raises(VlmeftError) as info:
        parse_yaml(text, "x.yaml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("x.yaml")


def test_nesting_is_bounded_before_recursion():
    ok = "a: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    parse_yaml(ok, "f")
    deep = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(VlmeftError, match="nesting deeper"):
        parse_yaml(deep, "f")


def test_alias_bomb_is_refused_fast():
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    with pytest.raises(VlmeftError, match="anchors are not allowed"):
        parse_yaml("\n".join(levels) + "\n", "bomb.yaml")
    assert time.perf_counter() - start < 2.0


def test_file_rules(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    with pytest.raises(VlmeftError, match="file is empty"):
        safe_load_yaml(empty)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"a: 1\ntitle: caf\xe9\n")
    with pytest.raises(VlmeftError, match=r"latin1.yaml:2: not UTF-8"):
        load_yaml_document(latin1, str(latin1.name))
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(VlmeftError, match="over the 1000-byte limit"):
        safe_load_yaml(big, max_bytes=1000)
    assert safe_load_yaml(big, max_bytes=10_000)["a"].startswith("xx")
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffa: 1\n".encode())
    assert safe_load_yaml(bom) == {"a": 1}
    with pytest.raises(VlmeftError, match="no such file"):
        safe_load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(VlmeftError, match="is a directory"):
        safe_load_yaml(tmp_path)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_data_or_a_vlmeft_error(text):
    """Whatever the input, the reader returns plain data or raises VlmeftError, never anything else."""
    try:
        data = parse_yaml(text, "fuzz.yaml").data
    except VlmeftError as err:
        assert str(err).startswith("fuzz.yaml")
        return

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (str, int, float, bool))

    assert plain(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a:", " &x", " *x", " !!python/tuple", " [", "]", "{", "}", "\n", "- ", "<<:", " 1", '"', "'"]), max_size=30))
def test_yaml_shaped_noise(parts):
    text = "".join(parts)
    try:
        parse_yaml(text, "noise.yaml")
    except VlmeftError:
        pass
