"""Task kinds are pluggable objects: each existing kind is one module, and a new kind
added as one module is planned, measured, reported, run from the CLI and (for method
kinds) probed by conformance without touching any other module."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from vlmeft import kinds

ROOT = Path(kinds.__file__).resolve().parents[2]  # the checkout

TOY = '''
"""A toy kind for the plug-in test: count the boxes of a scene (two or three objects)."""
from vlmeft.kinds import Column, Protocol, TaskKind


class Counting(TaskKind):
    name = "counting"
    order = 50
    data = "scenes"
    protocols = (Protocol("count-objects", False, "how many objects: two or three"),)
    metrics = ("accuracy",)
    observe = None

    def method_fits(self, caps, method, protocol):
        return caps.builds and caps.classification and caps.new_classes and not caps.uses_data

    def measure(self, runner, cell):
        import numpy as np
        from vlmeft.data.types import Split
        from vlmeft.engine import evaluate

        samples = runner._task(cell.task).grounding[:24]
        labels = np.array([len(s.boxes) - 2 for s in samples], dtype=np.int64)
        split = Split(np.stack([s.image for s in samples]), labels, key=f"{cell.task}/count")
        method = runner._build(cell.method, ["two", "three"], ["a photo of {} objects."], cell.seed)
        return {"accuracy": evaluate(method, split)}, method, None

    def run_summary(self, runner, cell, metrics):
        return [f"counting accuracy: {100 * metrics['accuracy']:.1f}%"], dict(metrics)

    def report_sections(self, g):
        return [f"## Counting: {t}\\n\\nmeasured\\n\\n" for t in g.tasks("count-objects")]

    def headline_columns(self, g):
        return [Column(f"{t} counting", t, "count-objects", 0, "accuracy") for t in g.tasks("count-objects")]


KIND = Counting()
'''


def test_each_existing_kind_is_one_module_declaring_everything():
    found = {k.name: k for k in kinds.all_kinds()}
    assert list(found) == ["classification", "retrieval", "grounding"]
    for name, kind in found.items():
        assert type(kind).__module__ == f"vlmeft.kinds.{name}"  # the class and KIND live in one module
        assert kind.protocols and kind.metrics and kind.data in ("classification", "scenes")
        assert type(kind).measure is not kinds.TaskKind.measure  # its evaluator
    assert kinds.protocols() == ("few-shot", "base-to-novel", "cross-domain", "cross-dataset",
                                 "domain-generalisation", "retrieval", "grounding")
    assert kinds.shot_protocols() == ("few-shot", "base-to-novel", "cross-domain", "cross-dataset",
                                      "domain-generalisation")
    # The method kinds carry conformance observers; retrieval runs classifiers, so it has none.
    assert found["classification"].observe is not None and found["grounding"].observe is not None
    assert found["retrieval"].observe is None and not found["grounding"].classifier


def test_no_kind_list_is_left_in_the_shared_modules():
    """The modules the issue names dispatch through kind objects: none of them spells a
    kind's protocol list, its evaluator or its observers any more."""
    checks = {
        "vlmeft/cli/run_commands.py": ['"retrieval"', '"grounding"', "SCENE_PROTOCOLS", "_run_scene"],
        "vlmeft/bench/plan.py": ["GROUNDING_BASELINES", '"retrieval"', 'protocol == "'],
        "vlmeft/bench/cells.py": ["grounding_accuracy", "sys.modules", "_retrieval", "_grounding", "_few_shot"],
        "vlmeft/bench/report.py": ["retrieval_table", "grounding_table", 'STABILITY_METRIC = {'],
        "vlmeft/bench/profiles.py": ['PROTOCOLS = ("'],
        "vlmeft/conformance/subject.py": ["def is_grounding", "method.ground("],
        "vlmeft/conformance/signatures.py": ["if subject.grounding else"],
        "vlmeft/conformance/checks.py": ['"box scores"'],
    }
    for path, needles in checks.items():
        text = (ROOT / path).read_text()
        for needle in needles:
            assert needle not in text, f"{path} still holds {needle}"
    # Conformance keeps its observers where they were, reached through the kinds.
    sig = ast.parse((ROOT / "vlmeft/conformance/signatures.py").read_text())
    assert {"observe", "_observe_classification", "_observe_grounding"} <= {
        n.name for n in sig.body if isinstance(n, ast.FunctionDef)}


@pytest.fixture()
def toy_kind(tmp_path, monkeypatch):
    """``counting.py`` in a folder added to the kinds package: one new module, nothing else."""
    (tmp_path / "counting.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    kinds.all_kinds.cache_clear()
    yield kinds.get("counting")
    kinds.all_kinds.cache_clear()
    import sys

    sys.modules.pop("vlmeft.kinds.counting", None)


def test_a_new_kind_is_one_module(toy_kind, tiny_vit, capsys):
    from vlmeft.bench.cells import CellRunner
    from vlmeft.bench.plan import Cell, method_fits, probe, task_fits
    from vlmeft.bench.report import report_markdown
    from vlmeft.cli import main

    assert "count-objects" in kinds.protocols() and kinds.for_protocol("count-objects") is toy_kind
    # Planned: its own task and method checks.
    assert task_fits("scenes", "count-objects") and not task_fits("digits", "count-objects")
    assert method_fits(probe("zsclip", tiny_vit, {}), "zsclip", "count-objects")
    assert not method_fits(probe("coop", tiny_vit, {}), "coop", "count-objects")
    # Measured by the shared runner through its evaluator, reported through its sections.
    runner = CellRunner(tiny_vit, lambda name: {})
    row = runner.run(Cell("zsclip", "scenes", "count-objects", 0, 1, tiny_vit.name, tiny_vit.weights_id))
    assert 0.0 <= row["accuracy"] <= 1.0 and row["protocol"] == "count-objects"
    md = report_markdown([row])
    assert "## Counting: scenes" in md and "scenes counting" in md.split("## Counting")[0]
    # Run from the command line, whose --protocol choices come from the kinds.
    code = main(["run", "zsclip", "--task", "scenes", "--protocol", "count-objects", "--backbone", "vlmeft-tiny-vit",
                 "--pretrained", "none", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "protocol count-objects" in out and "(nothing trained)" in out and "counting accuracy:" in out


def test_conformance_reaches_observers_and_shapes_through_the_kind(tiny_vit):
    from vlmeft.conformance.signatures import observe
    from vlmeft.conformance.subject import BASE_CLASSES, BATCH, ProbeData, Subject

    data = ProbeData.for_backbone(tiny_vit)
    zs = Subject("zsclip", tiny_vit, data)
    rc = Subject("red-circle", tiny_vit, data)
    assert zs.kind.name == "classification" and not zs.grounding
    assert rc.kind.name == "grounding" and rc.grounding
    assert zs.kind.probe_output_shape(zs) == ((BATCH, len(BASE_CLASSES)), "logits")
    assert rc.kind.probe_output_shape(rc) == ((sum(len(b) for b in data.boxes),), "box scores")
    assert tuple(rc.outputs(rc.build()).shape) == rc.kind.probe_output_shape(rc)[0]
    seen = observe(rc)
    assert seen["pixels_change"].value is True  # the marker is drawn: the grounding observers ran


def test_kinds_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, vlmeft.kinds as k; k.all_kinds(); import vlmeft.cli; vlmeft.cli.build_parser(); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
