"""Adding a method is a two-file change: a module that registers itself and a record.

The test lays out the package as an install does (``vlmeft/``, with ``methods/`` and
``taxonomy/`` inside it) in a scratch folder, adds exactly two files, and, in a fresh
process that imports that copy, finds the new method in ``vlmeft methods``, trains and
evaluates it with ``vlmeft run``, probes it in the conformance matrix, and finds its page
(with its docstring) and its taxonomy listing in the generated site. Nothing is written
into the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from vlmeft import registry
from vlmeft.kb.load import shipped_dir

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")

MODULE = '''
"""A test method: CoOp with two context tokens initialised from "a photo"."""

from dataclasses import dataclass

from vlmeft import registry
from vlmeft.methods.prompt_textual_learnable.coop import Config as CoOpConfig
from vlmeft.methods.prompt_textual_learnable.coop import CoOp


@dataclass
class Config(CoOpConfig):
    n_ctx: int = 2
    ctx_init: str = "a photo"
    epochs: int = 1


@registry.register
class TwoTokenPrompt(CoOp):
    """Two learnable context tokens in front of the class name (the two-file-change test)."""

    name = "two-token-prompt"
    category = "prompt.textual.learnable"
    Config = Config
'''

RECORD = '''
id: two-token-prompt
title: A Two-Token Prompt for the Two-File Test
authors: [Ada Example]
venue: Conference on Tests
venue_type: conference
year: 2024
paradigm: prompt
category: prompt.textual.learnable
modalities: [text]
tasks: [image-classification, few-shot]
summary: Two learnable context tokens in front of the class name.
implementation: {id: two-token-prompt, fidelity: simplified}
'''

SCRIPT = r"""
import io, json, sys
from contextlib import redirect_stdout
import vlmeft
from vlmeft.cli import main

def cli(*argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()

out = {"package": vlmeft.__file__}
rc, text = cli("methods", "--json")
out["methods"] = json.loads(text).get("two-token-prompt")
rc, text = cli("run", "two-token-prompt", "--task", "digits", "--shots", "1", "--backbone", "vlmeft-tiny-vit",
               "--pretrained", "none", "--no-progress", "--json")
out["run"] = {"rc": rc, "result": json.loads(text.strip().splitlines()[-1])}
rc, text = cli("conformance", "--method", "two-token-prompt", "--backbone", "vlmeft-tiny-vit", "--format", "json")
out["conformance"] = {"rc": rc, "cells": json.loads(text)["cells"]}
from vlmeft.kb.load import load_kb
from vlmeft.sitegen.generate import make_context, render
site = render(make_context(load_kb()))
out["site"] = {path: text for path, text in site.files.items()
               if path.endswith(("methods/two-token-prompt.md", "taxonomy/prompt.textual.learnable.md"))}
print(json.dumps(out))
"""


def _package(tmp: Path) -> Path:
    """The installed layout of the current tree: vlmeft/ with methods/ and taxonomy/ inside."""
    pkg = tmp / "pkg" / "vlmeft"
    shutil.copytree(ROOT / "vlmeft", pkg, ignore=IGNORE)
    shutil.copytree(registry.methods_root(), pkg / "methods", ignore=IGNORE)
    shutil.copytree(shipped_dir(), pkg / "taxonomy", ignore=IGNORE)
    return pkg


def test_a_module_and_a_record_are_all_it_takes(tmp_path):
    pkg = _package(tmp_path)
    before = {p.relative_to(pkg) for p in pkg.rglob("*") if p.is_file()}
    # The two files.
    (pkg / "methods" / "prompt_textual_learnable" / "two_token_prompt.py").write_text(textwrap.dedent(MODULE))
    (pkg / "taxonomy" / "methods" / "two-token-prompt.yaml").write_text(textwrap.dedent(RECORD).lstrip())
    after = {p.relative_to(pkg) for p in pkg.rglob("*") if p.is_file()}
    assert len(after - before) == 2

    env = dict(os.environ, PYTHONPATH=str(pkg.parent), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).resolve().is_relative_to(pkg.resolve()), "the copy, not the checkout, was imported"
    assert out["methods"] == {"category": "prompt.textual.learnable", "origin": "builtin", "status": "ok",
                              "flags": ["frozen_image_path"]}
    run = out["run"]
    assert run["rc"] == 0 and run["result"]["method"] == "two-token-prompt" and "stand_in" not in run["result"]
    assert run["result"]["trainable_params"] == 2 * 64  # two tokens of the tiny text tower's width
    conf = out["conformance"]
    assert conf["rc"] == 0 and {c["method"] for c in conf["cells"]} == {"two-token-prompt"}
    statuses = {c["check"]: c["status"] for c in conf["cells"]}
    assert statuses["signature.text_changes"] == statuses["frozen_image_path"] == "pass"
    assert "fail" not in statuses.values()
    page = out["site"]["generated/methods/two-token-prompt.md"]
    assert "Two learnable context tokens in front of the class name" in page  # the class docstring
    assert "vlmeft run two-token-prompt" in page
    assert "two-token-prompt" in out["site"]["generated/taxonomy/prompt.textual.learnable.md"]
    # The checkout itself is untouched.
    assert not registry.is_registered("two-token-prompt")
    assert not (ROOT / "methods" / "prompt_textual_learnable" / "two_token_prompt.py").exists()
