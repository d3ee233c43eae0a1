"""Property-based tests of the record loader (file bytes -> MethodRecord), end to end.

tests/test_kb_safe_yaml.py fuzzes the YAML reader with text; here whole files go through
``load_record`` and ``check_kb`` (schema, cross-record and registry checks): any byte
string yields either a record that satisfies the invariants no hostile record may break,
or ``VlmeftError`` lines that name the file, within a bounded CPU time per input.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmeft import robustness
from vlmeft.errors import VlmeftError
from vlmeft.kb.load import check_kb, load_record
from vlmeft.kb.schema import MethodRecord

DATA = Path(__file__).parent / "data"
GOOD = sorted((DATA / "kb" / "good" / "methods").glob("*.yaml"))
HOSTILE = sorted((DATA / "hostile").glob("*.yaml"))
CPU_LIMIT_S = 5.0  # per input; inputs here are at most a few kB and take milliseconds
FRAGMENTS = [f.decode("utf-8", "replace") for f in robustness.SPLICES if len(f) < 100] + [
    "<script>window.__pwned=1</script>", "https://example.org/x", "coop", "os:system", "../x", "\u202e", "\x1b",
    "\n", "'", '"', "{", "}", "[", "]", ":", "-", "#", "&", "*", "!", "|", ">", "%", "@", "`"]
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory) -> Path:
    return robustness.scratch_kb(tmp_path_factory.mktemp("props-kb"))


def _load(path: Path) -> tuple[MethodRecord | None, str | None]:
    """``load_record`` on ``path``: the record, or the error text; anything else propagates."""
    start = time.process_time()
    try:
        record, error = load_record(path), None
    except VlmeftError as err:
        record, error = None, str(err)
    assert time.process_time() - start < CPU_LIMIT_S
    return record, error


def _assert_clean(path: Path, record: MethodRecord | None, error: str | None) -> None:
    if record is None:
        assert error is not None and error.startswith(str(path)), error
        assert "\n" not in error and "\r" not in error
        assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 or ord(c) == 0x1B for c in error)
    else:
        assert robustness.record_invariants(record) is None, robustness.record_invariants(record)


@PROPS
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_record_or_a_clean_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "fuzz-record.yaml"
    path.write_bytes(data)
    _assert_clean(path, *_load(path))


@st.composite
def mutated(draw, sources: list[Path] = GOOD + HOSTILE) -> tuple[str, bytes]:
    source = draw(st.sampled_from(sources))
    buf = bytearray(source.read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice", "dup"]))
        if op == "flip" and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "dup" and buf:
            start = draw(st.integers(0, len(buf) - 1))
            buf[pos:pos] = buf[start:start + draw(st.integers(1, 80))]
        else:
            buf[pos:pos] = draw(st.sampled_from(robustness.SPLICES))
    return source.name, bytes(buf)


@PROPS
@given(mutated())
def test_mutated_records_give_a_record_or_a_clean_error(tmp_path_factory, case):
    """Mutants of valid records and of the corpus through the single-file loader."""
    name, data = case
    path = tmp_path_factory.mktemp("mutant") / name  # keep the stem: the id == stem rule stays satisfiable
    path.write_bytes(data)
    _assert_clean(path, *_load(path))


@settings(PROPS, max_examples=40)
@given(mutated(GOOD))
def test_mutants_agree_between_load_record_and_check_kb(tmp_path_factory, kb_dir, case):
    """The same through ``check_kb`` (cross checks, registry, taxonomy): clean lines naming the
    file, and nothing that ``load_record`` refuses slips through. (Fewer examples: each call
    re-reads the taxonomy.)"""
    name, data = case
    path = tmp_path_factory.mktemp("mutant") / name
    path.write_bytes(data)
    record, error = _load(path)
    _assert_clean(path, record, error)
    start = time.process_time()
    _, errors = check_kb(kb_dir, [path])
    assert time.process_time() - start < CPU_LIMIT_S
    assert all(str(e).startswith(str(path)) and "\n" not in str(e) for e in errors), errors
    if record is None:
        assert errors, "check_kb accepted what load_record refused"


def test_mutants_of_valid_records_are_sometimes_accepted(tmp_path):
    """Control for the property above: the mutation strategy does not only produce garbage,
    so the accepted branch (and its invariants) really runs."""
    import random

    rng = random.Random(0)
    accepted = 0
    for i in range(60):
        src = GOOD[i % len(GOOD)]
        path = tmp_path / f"{i}" / src.name
        path.parent.mkdir()
        path.write_bytes(robustness.mutate(src.read_bytes(), rng))
        record, error = _load(path)
        _assert_clean(path, record, error)
        accepted += record is not None
    assert 0 < accepted < 60


def _valid_fields(record_id: str) -> dict:
    return {"id": record_id, "title": "A Property Record", "authors": ["Ada Example"], "venue": "Conference on Tests",
            "venue_type": "conference", "year": 2023, "paradigm": "prompt", "category": "prompt.textual.learnable",
            "modalities": ["text"], "tasks": ["image-classification"], "summary": "Generated by hypothesis.",
            "implementation": {"id": "coop", "fidelity": "category-reference"}}


hostile_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=8).map("".join)
FIELDS = ["title", "venue", "summary", "url", "code", "paradigm", "category", "venue_short"]


@PROPS
@given(st.dictionaries(st.sampled_from(FIELDS + ["impl", "author", "alias", "source", "task"]), hostile_text,
                       min_size=1, max_size=4))
def test_hostile_field_values(tmp_path_factory, values):
    """Valid YAML whose field values are built from the corpus' attack fragments: a value
    is either refused, or kept exactly (modulo surrounding whitespace) and inert."""
    fields = _valid_fields("field-record")
    for key, value in values.items():
        if key == "impl":
            fields["implementation"] = {"id": value, "fidelity": "faithful"}
        elif key == "author":
            fields["authors"] = [value]
        elif key == "alias":
            fields["aliases"] = [value]
        elif key == "task":
            fields["tasks"] = [value]
        elif key == "source":
            fields["results"] = [{"metric": "accuracy", "value": 1.0, "dataset": "digits", "source": value}]
        else:
            fields[key] = value
    path = tmp_path_factory.mktemp("fields") / "field-record.yaml"
    path.write_text(yaml.safe_dump(fields, allow_unicode=True), encoding="utf-8")
    record, error = _load(path)
    _assert_clean(path, record, error)
    if record is not None:
        for key in set(values) & set(FIELDS):
            assert getattr(record, key) == values[key].strip()
