"""The bad-input corpus (tests/data/kb/bad): every file is refused by `vlmeft validate`
with exit code 2 and one line per problem naming the file (and line and field where
there is one), never a traceback; nothing in a file is ever executed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kb_helpers import BAD, make_kb
from vlmeft.cli import build_parser, main
from vlmeft.kb.load import check_kb

# file -> (expected location prefix after the file name, expected message fragment)
CORPUS = {
    "malformed-yaml.yaml": (":4:", "malformed YAML"),
    "unknown-key.yaml": (":15 field 'colour'", "unknown key 'colour'"),
    "wrong-type.yaml": (":6 field 'year'", "valid integer"),
    "duplicate-id/alpha-prompt.yaml": (":1 field 'id'", "duplicate id 'alpha-prompt'"),
    "duplicate-alias.yaml": (":15 field 'aliases[0]'", "duplicate alias 'AlphaPrompt'"),
    "unknown-category.yaml": (":8 field 'category'", "unknown category 'prompt.textual.learnt'"),
    "python-tag.yaml": (":11:", "python/object/apply:os.system"),
    "alias-bomb.yaml": (":2:", "anchors are not allowed"),
    "empty.yaml": (":", "file is empty"),
    "non-utf8.yaml": (":2:", "not UTF-8"),
    "javascript-url.yaml": (":15 field 'code'", "not javascript:"),
    "http-url.yaml": (":15 field 'code'", "not http:"),
    "bidi-title.yaml": (":2 field 'title'", "bidirectional control character U+202E"),
    "control-char.yaml": (":2 field 'title'", "control character U+0007"),
    "bad-arxiv.yaml": (":15 field 'arxiv'", "not an arXiv id"),
    "unquoted-arxiv.yaml": (":15 field 'arxiv'", "quoted string"),
    "bad-doi.yaml": (":15 field 'doi'", "not a DOI"),
    "deep-nesting.yaml": (":2:", "nesting deeper"),
    "two-documents.yaml": (":2:", "one YAML document per file"),
    "wrong-stem.yaml": (":1 field 'id'", "must equal the file name stem"),
    "ref-mismatch.yaml": (":13 field 'implementation.id'", "must be 'coop', not 'maple'"),
    "unregistered-impl.yaml": (":13 field 'implementation.id'", "not a registered method"),
    "paradigm-mismatch.yaml": (":7 field 'paradigm'", "needs a category under 'adapter'"),
    "unknown-task.yaml": (":10 field 'tasks[1]'", "unknown task 'few-shots'"),
}


def test_corpus_is_complete():
    on_disk = {str(p.relative_to(BAD)) for p in BAD.rglob("*.yaml")}
    assert on_disk == set(CORPUS)


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory):
    build_parser()  # import every command module once, so timings below measure validation only
    return make_kb(tmp_path_factory.mktemp("badkb"))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_validate_refuses(name, kb_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a would-be os.system("touch ...") would land here
    path = BAD / name
    start = time.perf_counter()
    rc = main(["validate", str(path), "--taxonomy", str(kb_dir)])
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    location, fragment = CORPUS[name]
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, lines  # each file is wrong in exactly one way
    assert lines[0].startswith(f"error: {path}{location}"), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing executed, nothing written
    if name == "alias-bomb.yaml":
        assert elapsed < 2.0


def test_alias_bomb_check_is_fast(kb_dir):
    start = time.perf_counter()
    _, errors = check_kb(kb_dir, [BAD / "alias-bomb.yaml"])
    assert time.perf_counter() - start < 2.0
    assert len(errors) == 1 and "anchors are not allowed" in str(errors[0])


def test_python_tag_would_execute_with_an_unsafe_loader(tmp_path):
    """Control: the python-tag fixture is a live payload, so the test above can fail."""
    code = "import yaml, sys; yaml.unsafe_load(open(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(BAD / "python-tag.yaml")], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "vlmeft-executed-marker").exists()


def test_subprocess_validate_prints_one_line_and_no_traceback(kb_dir, tmp_path):
    files = [BAD / "bidi-title.yaml", BAD / "python-tag.yaml", BAD / "alias-bomb.yaml"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vlmeft", "validate", *map(str, files), "--taxonomy", str(kb_dir)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), proc.stderr
    for f in files:
        assert sum(str(f) in line for line in lines) == 1
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "vlmeft-executed-marker").exists()


def test_validate_reports_every_file(kb_dir, capsys):
    paths = [BAD / n for n in ("bad-doi.yaml", "bad-arxiv.yaml", "empty.yaml")]
    assert main(["validate", *map(str, paths), "--taxonomy", str(kb_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [Path(line.split(":", 2)[1].strip()).resolve() for line in err] == [p.resolve() for p in paths]


def test_validate_folder_of_records(kb_dir, capsys, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for n in ("bad-doi.yaml", "bad-arxiv.yaml"):
        (folder / n).write_bytes((BAD / n).read_bytes())
    assert main(["validate", str(folder), "--taxonomy", str(kb_dir)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_validate_missing_path(kb_dir, capsys):
    assert main(["validate", "no/such/file.yaml", "--taxonomy", str(kb_dir)]) == 2
    assert capsys.readouterr().err.strip() == "error: no/such/file.yaml: no such file or directory"


def test_oversized_file(kb_dir, capsys, tmp_path):
    big = tmp_path / "big-record.yaml"
    big.write_text("id: big-record\nsummary: >-\n" + ("  " + "x" * 99 + "\n") * 11_000)
    assert main(["validate", str(big), "--taxonomy", str(kb_dir)]) == 2
    assert "over the 1000000-byte limit" in capsys.readouterr().err
