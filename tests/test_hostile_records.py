"""The hostile-input corpus (tests/data/hostile): every file is refused by `vlmeft validate`
with one line naming the file (line, field), exit code 2 and no traceback, or, for markup
in text fields, accepted as plain text; nothing in a record is imported or executed.

tests/test_kb_bad_inputs.py covers the everyday mistakes (tests/data/kb/bad); this file
covers attacks, plus inputs too large to commit (generated into tmp_path)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlmeft import robustness
from vlmeft.cli import build_parser, main
from vlmeft.errors import VlmeftError
from vlmeft.kb.load import check_kb

CORPUS = Path(__file__).parent / "data" / "hostile"
MANIFEST = robustness.load_manifest(CORPUS)
REFUSED = sorted(n for n, e in MANIFEST.items() if e["expect"] == "refused")
ACCEPTED = sorted(n for n, e in MANIFEST.items() if e["expect"] == "accepted")
# What a payload would leave behind if it ever ran (the corpus' commands touch this name).
MARKER = "vlmeft-pwned"
TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory) -> Path:
    build_parser()  # import the command modules once
    return robustness.scratch_kb(tmp_path_factory.mktemp("hostile-kb"))


def test_manifest_readme_and_files_agree():
    on_disk = sorted(p.name for p in CORPUS.glob("*.yaml"))
    assert on_disk == sorted(MANIFEST)
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    missing = [n for n in on_disk if f"`{n}`" not in readme]
    assert not missing, f"README.md does not list {missing}"
    kinds = {e["kind"] for e in MANIFEST.values()}
    # every hostile kind the issue names has inputs
    assert {"yaml-structure", "object-tags", "characters", "markup", "links", "path-traversal",
            "implementation-links"} <= kinds
    assert ACCEPTED and all(MANIFEST[n]["kind"] == "markup" for n in ACCEPTED)


@pytest.mark.parametrize("name", REFUSED)
def test_validate_refuses_in_one_line(name, kb_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a payload that ran would write here
    path = CORPUS / name
    rc = main(["validate", str(path), "--taxonomy", str(kb_dir)])
    out, err = capsys.readouterr()
    entry = MANIFEST[name]
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}{entry['at']}"), lines[0]
    assert entry["match"] in lines[0], lines[0]
    assert not TERMINAL_UNSAFE.search(err), f"raw control/bidi character reaches the terminal: {err!r}"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ACCEPTED)
def test_markup_is_accepted_as_text(name, kb_dir, capsys):
    assert main(["validate", str(CORPUS / name), "--taxonomy", str(kb_dir)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 file(s)")


def test_payloads_are_live(tmp_path):
    """Control: with PyYAML's unsafe loader the tag payloads do run, so the refusals above mean something."""
    code = "import yaml, sys\nfor f in sys.argv[1:]:\n    try: yaml.unsafe_load(open(f))\n    except Exception: pass\n"
    files = [CORPUS / "tag-python-apply.yaml", CORPUS / "tag-directive-rebind.yaml"]
    for f in files:
        subprocess.run([sys.executable, "-c", code, str(f)], cwd=tmp_path, check=True, capture_output=True, timeout=60)
        assert (tmp_path / MARKER).exists(), f.name
        (tmp_path / MARKER).unlink()


def _ten_megabytes(folder: Path) -> Path:
    case = next(c for c in robustness.generated_cases() if c.name == "oversized-10mb.yaml")
    path = folder / case.name
    path.write_bytes(case.data)
    assert path.stat().st_size >= 10 * 1024 * 1024
    return path


def test_ten_megabyte_record_is_refused_without_reading_it(kb_dir, tmp_path):
    path = _ten_megabytes(tmp_path)
    start = time.process_time()
    _, errors = check_kb(kb_dir, [path])
    assert time.process_time() - start < 2.0
    assert len(errors) == 1 and "over the 1000000-byte limit" in str(errors[0]) and str(path) in str(errors[0])


@pytest.mark.parametrize("case", robustness.generated_cases(), ids=lambda c: c.name)
def test_generated_large_inputs(case, kb_dir, tmp_path):
    """10 MB, 60,000 unknown keys, 100,000 list entries, a 900 kB title: refused, few lines, bounded CPU."""
    outcome = robustness.check_case(case, kb_dir, tmp_path)
    assert outcome.ok, outcome.detail
    assert outcome.status == "refused" and outcome.lines <= robustness.MAX_ERROR_LINES
    assert outcome.cpu_seconds < robustness.TIME_LIMIT_S


def test_subprocess_validate_whole_corpus(kb_dir, tmp_path):
    """The real command on every refused file at once: one line per file, exit 2, no traceback."""
    files = [CORPUS / n for n in REFUSED] + [_ten_megabytes(tmp_path)]
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "vlmeft", "validate", *map(str, files), "--taxonomy", str(kb_dir)],
                          cwd=work, capture_output=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                          timeout=600)
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 2, err[-2000:]
    assert proc.stdout == b""
    assert "Traceback" not in err
    assert not TERMINAL_UNSAFE.search(err), "raw control/bidi characters reached stderr"
    lines = err.splitlines()
    assert len(lines) == len(files), "\n".join(lines)
    for f in files:
        named = [ln for ln in lines if ln.startswith(f"error: {f}:")]
        assert len(named) == 1, (f.name, named)
    assert not list(work.iterdir())


AUDIT = r"""
import json, sys
from pathlib import Path
from vlmeft.kb.load import check_kb
kb, files = sys.argv[1], sys.argv[2:]
check_kb(kb)  # warm up: whatever the loader itself imports is not a payload
from vlmeft import registry
registry.names()  # ... nor the registry's one-time read of methods/ and the installed entry points
from vlmeft.errors import one_line
one_line("\x1b")  # ... and the codec that escapes control characters in messages
before = set(sys.modules)
events = []
WATCH = ("os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "subprocess.Popen", "ctypes.",
         "socket.", "import", "open", "exec", "compile")
def hook(event, args):
    if event.startswith(WATCH):
        events.append([event, repr(args[0])[:300] if args else ""])
sys.addaudithook(hook)
for f in files:
    check_kb(kb, [Path(f)])
new = sorted(set(sys.modules) - before)
print(json.dumps({"events": events, "new_modules": new}))
"""


def test_nothing_in_a_record_is_imported_or_executed(kb_dir, tmp_path):
    """An audit hook watches the loader read the whole corpus: no process, no import, no exec,
    no file opened but the records themselves."""
    files = sorted(str(p) for p in CORPUS.glob("*.yaml"))
    proc = subprocess.run([sys.executable, "-c", AUDIT, str(kb_dir), *files], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    opened = {e[1].strip("'\"") for e in seen["events"] if e[0] == "open"}
    assert opened <= set(files) | {str(kb_dir / n) for n in robustness.BASE_FILES}, sorted(opened - set(files))[:5]
    others = [e for e in seen["events"] if e[0] != "open"]
    assert not others, others[:10]
    assert not seen["new_modules"], seen["new_modules"]
    assert not list(tmp_path.iterdir())


def test_robustness_run_counts(tmp_path):
    """The run behind results/robustness.json (corpus + mutants here; the generated inputs
    are checked above), with no failures, and its counts on the site's robustness page."""
    cases = robustness.corpus_cases() + robustness.fuzz_cases(40, seed=1)
    summary = robustness.summarise(list(robustness.iter_outcomes(cases)))
    assert summary["failures"] == 0, summary["failed"]
    assert summary["inputs_tried"] == len(MANIFEST) + 40
    assert summary["refused"] + summary["accepted"] == summary["inputs_tried"]
    assert summary["by_kind"]["markup"]["accepted"] == len(ACCEPTED)
    assert sum(k["inputs_tried"] for k in summary["by_kind"].values()) == summary["inputs_tried"]
    path = robustness.write_summary(summary, tmp_path / "robustness.json")
    assert json.loads(path.read_text())["inputs_tried"] == summary["inputs_tried"]

    from vlmeft.sitegen.result_pages import robustness_page
    from vlmeft.sitegen.results import load_robustness

    ctx = SimpleNamespace(robustness=load_robustness(tmp_path))
    page = robustness_page(ctx)
    assert f"| {summary['inputs_tried']} | {summary['refused']} | {summary['accepted']} | 0 |" in page
    assert "| `markup` | 2 | 0 | 2 | 0 |" in page and "## Failures" in page and "None." in page
    assert "Not measured yet." in robustness_page(SimpleNamespace(robustness=load_robustness(tmp_path / "none")))
    path.write_text('{"inputs_tried": "many"}')
    with pytest.raises(VlmeftError, match="robustness.json"):
        load_robustness(tmp_path)


def test_robustness_flags_a_loader_that_accepts_a_hostile_record(tmp_path):
    """The counter can fail: a record expected refused but valid counts as a failure."""
    valid = (Path(__file__).parent / "data" / "kb" / "good" / "methods" / "alpha-prompt.yaml").read_bytes()
    case = robustness.Case("alpha-prompt.yaml", "links", valid, "refused", ":14 field 'code'", "javascript")
    kb = robustness.scratch_kb(tmp_path)
    outcome = robustness.check_case(case, kb, tmp_path)
    assert not outcome.ok and "expected refused, got accepted" in outcome.detail


def test_a_fifo_named_like_a_record_is_refused_not_read(tmp_path):
    """A FIFO would block a reader forever; the loader refuses anything but a regular file."""
    import os

    from vlmeft.cli import main

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert main(["validate", str(fifo)]) == 2
