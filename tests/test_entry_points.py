"""Third-party methods: the example package, installed, registers through the
``vlmeft.methods`` entry point and is listed, run through conformance, and listed
without importing torch. Broken or clashing entry points are reported, never hidden."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from vlmeft import registry
from vlmeft.cli import main
from vlmeft.errors import VlmeftError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vlmeft-example-method"
ID = "diagonal-adapter"

CHECK = r"""
import io, json, sys
from contextlib import redirect_stdout
from vlmeft import registry
listed = registry.names()
torch_free = "torch" not in sys.modules
from vlmeft.cli import main
out = {"listed": listed, "torch_free": torch_free}
for key, argv in (("methods", ["methods", "--json"]),
                  ("conformance", ["conformance", "--method", "diagonal-adapter", "--backbone", "vlmeft-tiny-vit",
                                   "--format", "json"])):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    out[key] = {"rc": rc, "doc": json.loads(buf.getvalue())}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example package installed into a scratch folder (offline: no index, no build
    isolation), from a copy so the checkout is left untouched."""
    tmp = tmp_path_factory.mktemp("entry-point")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def test_installed_example_is_listed_and_passes_conformance(installed, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ID in out["listed"] and out["torch_free"], "listing entry points must not import torch"
    methods = out["methods"]
    assert methods["rc"] == 0
    assert methods["doc"][ID] == {"category": "adapter.unimodal", "origin": "entry point of vlmeft-example-method",
                                  "status": "ok", "flags": ["frozen_image_path"]}
    conf = out["conformance"]
    cells = {c["check"]: c for c in conf["doc"]["cells"]}
    assert conf["rc"] == 0 and {c["method"] for c in cells.values()} == {ID}
    assert all(c["status"] in ("pass", "na") for c in cells.values()), [c for c in cells.values() if c["status"] == "fail"]
    # Judged against the category its class declares (adapter.unimodal has no cross-modal dependence) ...
    assert cells["signature.crossmodal_dependence"]["status"] == "pass"
    assert cells["signature.image_depends_on_text"]["status"] == "pass"
    # ... and its frozen_image_path declaration is checked, not trusted.
    assert cells["frozen_image_path"]["status"] == "pass"
    assert cells["only_declared_change"]["status"] == "pass"


# ---------------------------------------------------------------- bad entry points
@pytest.fixture
def entry_points(monkeypatch):
    """Replace the installed entry points of the group with the given ones."""
    import importlib.metadata

    real = importlib.metadata.entry_points

    def install(*eps: EntryPoint) -> None:
        def fake(**selection):
            return list(eps) if selection.get("group") == registry.ENTRY_POINT_GROUP else real(**selection)

        monkeypatch.setattr("importlib.metadata.entry_points", fake)
        registry.refresh()

    yield install
    monkeypatch.undo()
    registry.refresh()


def test_clashing_and_malformed_entry_points_are_ignored_with_a_warning(entry_points, capsys):
    entry_points(EntryPoint("coop", "somewhere:Other", "vlmeft.methods"),
                 EntryPoint("Not_An_Id", "somewhere:Other", "vlmeft.methods"),
                 EntryPoint("no-class", "somewhere", "vlmeft.methods"))
    assert registry.get("coop").__module__ == "vlmeft.methods.prompt_textual_learnable.coop"
    assert not registry.is_registered("Not_An_Id") and not registry.is_registered("no-class")
    assert len(registry.problems()) == 3
    assert main(["methods"]) == 1
    err = capsys.readouterr().err
    assert "id 'coop' is already registered" in err and "kebab-case" in err and "module:Class" in err


def test_a_broken_entry_point_fails_loudly_in_one_line(entry_points, capsys):
    entry_points(EntryPoint("broken-plugin", "no_such_module_for_vlmeft:Thing", "vlmeft.methods"),
                 EntryPoint("not-a-method", "json:JSONDecoder", "vlmeft.methods"))
    assert registry.names().count("broken-plugin") == 1
    with pytest.raises(VlmeftError, match="broken-plugin' failed to load: ModuleNotFoundError"):
        registry.get("broken-plugin")
    with pytest.raises(VlmeftError, match="not a vlmeft.method.Method subclass"):
        registry.get("not-a-method")
    assert main(["methods"]) == 1
    out = capsys.readouterr().out
    assert "broken-plugin" in out and "broken: " in out
    assert main(["conformance", "--method", "broken-plugin", "--backbone", "vlmeft-tiny-vit"]) == 1
    assert "failed to load" in capsys.readouterr().out
