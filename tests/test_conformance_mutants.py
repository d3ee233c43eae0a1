"""The conformance matrix can fail: one mutant per signature key and generic check.

Each mutant (``tests/conformance_mutants.py``) breaks one property of a real method. It
is registered in-process for this module only, probed on ``vlmeft-tiny-vit`` against the
category its class declares, and must turn exactly its cells red, each with a reason
naming what broke; every other cell stays green (or n/a).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conformance_mutants import EXPECTED_RED, MUTANTS
from vlmeft import registry
from vlmeft.conformance.checks import GENERIC_CHECKS
from vlmeft.conformance.matrix import CHECKS, Matrix, cases, rows
from vlmeft.conformance.signatures import SIGNATURE_KEYS
from vlmeft.kb.load import load_kb

BACKBONE = "vlmeft-tiny-vit"
KB = load_kb()


def _view():
    """The shipped KB plus one record: the parameter-count mutant claims CoOp's count."""
    coop = KB.methods["coop"]
    record = coop.model_copy(update={"id": "mutant-param-count", "implementation": coop.implementation.model_copy(
        update={"id": "mutant-param-count"})})
    return SimpleNamespace(methods={**KB.methods, "mutant-param-count": record}, categories=KB.categories)


@pytest.fixture(scope="module")
def red():
    """Row label -> {check: reason} of its failed cells, for every mutant row."""
    with registry.registered(*MUTANTS):
        view = _view()
        todo = list(cases(view, [BACKBONE], [m.name for m in MUTANTS]))
        cells = Matrix(view).run(todo)
    out: dict[str, dict[str, str]] = {}
    for c in cells:
        out.setdefault(c.method, {})
        if c.status == "fail":
            out[c.method][c.check] = c.reason
    return out


def test_every_signature_key_and_generic_check_has_a_mutant():
    covered = set().union(*EXPECTED_RED.values())
    assert covered == {f"signature.{k}" for k in SIGNATURE_KEYS} | set(GENERIC_CHECKS) == set(CHECKS)


@pytest.mark.parametrize("label", sorted(EXPECTED_RED))
def test_mutant_turns_exactly_its_cells_red(red, label):
    expected = EXPECTED_RED[label]
    assert set(red[label]) == set(expected), red[label]
    for check, reason in red[label].items():
        assert expected[check] in reason, (check, reason)


def test_mutants_are_registered_only_inside_the_test():
    assert not any(registry.is_registered(m.name) for m in MUTANTS)
    with registry.registered(*MUTANTS):
        assert all(registry.get(m.name) is m for m in MUTANTS)
        assert "mutant-trains" in registry.names()
    assert "mutant-trains" not in registry.names()


def test_variants_of_shipped_methods_are_rows():
    labels = {r.label for r in rows(KB)}
    assert {"vpt:shallow", "coop:csc", "calip:fs"} <= labels
    row = next(r for r in rows(KB) if r.label == "calip:fs")
    assert dict(row.overrides)["few_shot"] == "true" and row.impl == "calip"
    # Declared in the class body only: CoOp's subclasses do not inherit its csc variant.
    assert "cocoop:csc" not in labels and "kgcoop:csc" not in labels


def test_a_module_that_does_not_import_fails_never_skips(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError(f"No module named 'vlmeft.methods.x.{name}'", name=f"vlmeft.methods.x.{name}")

    monkeypatch.setattr(registry, "get", broken)
    cells = Matrix(KB).run(list(cases(KB, [BACKBONE], ["zsclip"]))[:3])
    assert [c.status for c in cells] == ["fail"] * 3 and "is missing" in cells[0].reason
