"""The conformance matrix as a pytest matrix, plus tests of the generator itself.

Rows are generated from the shipped knowledge base (``vlmeft.conformance.matrix.cases``):
one per (record with its own implementation, or one of its declared conformance variants;
check; backbone). Adding a record adds its rows; records with fidelity
``category-reference`` share their reference's rows. A check that does not apply is
skipped with the reason; every other cell must pass (a module that does not import fails).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlmeft.cli import main
from vlmeft.conformance import report
from vlmeft.conformance.matrix import (
    CHECKS, DEFAULT_BACKBONES, Matrix, cases, declared_variants, own_records, shared_records,
)
from vlmeft.conformance.signatures import SIGNATURE_KEYS, expected_value
from vlmeft.kb.load import load_kb, load_record

KB = load_kb()
CASES = list(cases(KB))
FIXTURE = Path(__file__).parent / "data" / "conformance" / "misfiled"


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    return Matrix(KB)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cell(matrix: Matrix, case) -> None:  # noqa: ANN001
    cell = matrix.cell(case)
    if cell.status == "na":
        pytest.skip(cell.reason)
    assert cell.status == "pass", f"{case.id}: {cell.reason}"


# ------------------------------------------------------------------ generator
def test_rows_come_from_the_knowledge_base() -> None:
    ids = {r.id for r in own_records(KB)}
    assert ids == {r.id for r in KB.methods.values() if r.implementation and r.implementation.fidelity != "category-reference"}
    labels = {c.method for c in CASES}
    variants = {f"{i}:{v}" for i in ids for v in declared_variants(KB.methods[i].implementation.id)}
    assert labels == ids | variants and variants
    assert len(CASES) == len(labels) * len(CHECKS) * len(DEFAULT_BACKBONES)
    # every signature key of the schema is a column
    assert {c.check for c in CASES} >= {f"signature.{k}" for k in SIGNATURE_KEYS}


def test_adding_a_record_adds_its_rows() -> None:
    extra = KB.methods["vp"].model_copy(update={"id": "vp-variant"})
    view = SimpleNamespace(methods={**KB.methods, "vp-variant": extra}, categories=KB.categories)
    grown = list(cases(view))
    assert len(grown) - len(CASES) == len(CHECKS) * len(DEFAULT_BACKBONES)
    assert {c.method for c in grown} - {c.method for c in CASES} == {"vp-variant"}


def test_category_reference_records_share_cells() -> None:
    shared = dict(shared_records(KB))
    assert shared, "the shipped KB has category-reference records"
    assert not set(shared) & {c.method for c in CASES}
    for record_id, impl in shared.items():
        assert impl == KB.methods[record_id].implementation.id


# ---------------------------------------------------- misfiled fixture records
def _misfiled(name: str):  # noqa: ANN202
    return load_record(FIXTURE / f"{name}.yaml")


def _expected_red(name: str, method_cls) -> set[str]:  # noqa: ANN001
    """Signature keys on which the wrong leaf demands something concrete that the true
    leaf contradicts."""
    right = KB.categories.leaf(KB.methods[name].category).signature
    wrong = KB.categories.leaf(_misfiled(name).category).signature
    red = set()
    for key in SIGNATURE_KEYS:
        if getattr(wrong, key) in ("any", "na") or getattr(right, key) in ("any", "na"):
            continue
        if expected_value(key, wrong, method_cls)[0] != expected_value(key, right, method_cls)[0]:
            red.add(f"signature.{key}")
    return red


@pytest.mark.parametrize("name", ["vp", "ivlp", "clip-adapter"])
def test_misfiled_record_turns_exactly_its_signature_cells_red(name: str) -> None:
    from vlmeft import registry

    cls = registry.get(name)
    view = SimpleNamespace(methods={name: _misfiled(name)}, categories=KB.categories)
    cells = Matrix(view).run(cases(view, ["vlmeft-tiny-vit"]))
    red = {c.check for c in cells if c.status == "fail"}
    expected = _expected_red(name, cls)
    assert expected, "the fixture must misfile the record under a leaf that disagrees"
    assert red == expected, {c.check: c.reason for c in cells if c.status == "fail"}
    if name == "vp":  # spelled out once, so the derivation above cannot drift silently
        assert red == {"signature.pixels_change", "signature.vision_tokens_grow"}


# ------------------------------------------------------------ CLI and reports
def test_cli_json_and_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["conformance", "--method", "vp", "--backbone", "vlmeft-tiny-vit", "--format", "json", "--write", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["backbone"] == "vlmeft-tiny-vit"
    assert {c["status"] for c in out["cells"]} <= {"pass", "na"}
    assert {tuple(sorted(c)) for c in out["cells"]} == {("backbone", "check", "method", "reason", "status")}
    assert len(out["cells"]) == len(CHECKS)
    written = json.loads((tmp_path / "conformance.json").read_text())
    assert written["cells"] == out["cells"] and written["fingerprint"] == out["fingerprint"]
    assert out["selection"] == {"backbones": ["vlmeft-tiny-vit"], "methods": ["vp"]}
    md = (tmp_path / "conformance.md").read_text()
    assert "| `vp` |" in md and "✓" in md

    # The misfiled fixture: the same command exits 1 and names the red cells.
    view = SimpleNamespace(methods={"vp": _misfiled("vp")}, categories=KB.categories)
    monkeypatch.setattr("vlmeft.kb.load.load_kb", lambda *_a, **_k: view)
    rc = main(["conformance", "--method", "vp", "--backbone", "vlmeft-tiny-vit"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAIL vp [vlmeft-tiny-vit] signature.vision_tokens_grow" in text


def test_cli_bad_method_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--method", "no-such-method"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-method" in err[0]


def test_markdown_lists_reasons_for_non_passing_cells() -> None:
    from vlmeft.conformance.matrix import Cell

    cells = [Cell("a", "logits", "bb", "pass", "ok"), Cell("a", "param_count", "bb", "fail", "1 vs 2"),
             Cell("b", "logits", "bb", "na", "needs vision tokens")]
    md = report.to_markdown(cells, {"bb": "random init"}, [("x", "a")])
    assert "✗" in md and "n/a" in md and "1 vs 2" in md and "needs vision tokens" in md and "`x` → `a`" in md
