"""The decoder observers can fail: each generative mutant turns exactly its cells red on the
random tiny CoCa (``vlmeft-tiny-coca``), with a reason naming what broke, and real decoder
LoRA, probed the same way, stays green."""

from __future__ import annotations

import pytest

from conformance_mutants_generative import EXPECTED_RED, MUTANTS
from vlmeft import registry
from vlmeft.conformance.matrix import Matrix, cases
from vlmeft.kb.load import load_kb

BACKBONE = "vlmeft-tiny-coca"


@pytest.fixture(scope="module")
def cells():
    kb = load_kb()
    with registry.registered(*MUTANTS):
        todo = list(cases(kb, [BACKBONE], [m.name for m in MUTANTS] + ["lora"]))
        return Matrix(kb).run(todo)


def _red(cells, label: str) -> dict[str, str]:
    return {c.check: c.reason for c in cells if c.method == label and c.status == "fail"}


@pytest.mark.parametrize("label", sorted(EXPECTED_RED))
def test_generative_mutant_turns_exactly_its_cells_red(cells, label):
    red = _red(cells, label)
    assert set(red) == set(EXPECTED_RED[label]), red
    for check, phrase in EXPECTED_RED[label].items():
        assert phrase in red[check], (check, red[check])


def test_the_method_the_mutants_change_is_green(cells):
    assert _red(cells, "lora") == {} and any(c.method == "lora" and c.status == "pass" for c in cells)
