"""`vlmeft list / show / cite / tree / validate / schema` on a fixture knowledge base."""

from __future__ import annotations

import io
import json

import pybtex.database
import pytest

from kb_helpers import HOSTILE, make_kb
from vlmeft.cli import kb_commands, main


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory):
    return str(make_kb(tmp_path_factory.mktemp("clikb"), HOSTILE))


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def ids_of(out):
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_list_plain_and_filters(kb_dir, capsys):
    rc, out, err = run(capsys, "list", "--taxonomy", kb_dir)
    assert rc == 0 and err == ""
    assert out.splitlines()[0].split() == ["id", "name", "category", "year", "venue", "arxiv"]
    assert ids_of(out) == ["alpha-prompt", "beta-adapter", "gamma-probe", "hostile-chars"]
    assert ids_of(run(capsys, "list", "--category", "prompt", "--taxonomy", kb_dir)[1]) == ["alpha-prompt", "hostile-chars"]
    assert ids_of(run(capsys, "list", "--category", "prompt.visual", "--taxonomy", kb_dir)[1]) == ["hostile-chars"]
    assert ids_of(run(capsys, "list", "--category", "uncategorised", "--taxonomy", kb_dir)[1]) == ["gamma-probe"]
    assert ids_of(run(capsys, "list", "--type", "journal", "--taxonomy", kb_dir)[1]) == ["beta-adapter"]
    assert ids_of(run(capsys, "list", "--task", "few-shot", "--taxonomy", kb_dir)[1]) == ["alpha-prompt"]
    assert ids_of(run(capsys, "list", "--year", "2023-", "--taxonomy", kb_dir)[1]) == ["alpha-prompt", "beta-adapter", "hostile-chars"]
    assert ids_of(run(capsys, "list", "--year", "2021", "--taxonomy", kb_dir)[1]) == ["gamma-probe"]
    assert ids_of(run(capsys, "list", "--modality", "text", "--taxonomy", kb_dir)[1]) == ["alpha-prompt"]
    assert ids_of(run(capsys, "list", "--modality", "both", "--taxonomy", kb_dir)[1]) == []
    assert ids_of(run(capsys, "list", "--paradigm", "adapter", "--taxonomy", kb_dir)[1]) == ["beta-adapter"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--category", "prompt.vis"], "unknown category 'prompt.vis' (did you mean prompt.visual"),
        (["--task", "fewshot"], "--task: unknown task 'fewshot' (did you mean few-shot"),
        (["--year", "twenty"], "--year: bad year 'twenty'"),
        (["--year", "2024-2020"], "start after end"),
        (["--paradigm", "prompting"], "unknown paradigm"),
    ],
)
def test_list_bad_filters(kb_dir, capsys, args, fragment):
    rc, out, err = run(capsys, "list", *args, "--taxonomy", kb_dir)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and fragment in err and len(err.splitlines()) == 1


def test_list_json(kb_dir, capsys):
    rc, out, _ = run(capsys, "list", "--format", "json", "--taxonomy", kb_dir)
    data = json.loads(out)
    assert rc == 0 and [d["id"] for d in data] == ["alpha-prompt", "beta-adapter", "gamma-probe", "hostile-chars"]
    assert data[0]["category"] == "prompt.textual.learnable" and data[0]["arxiv"] == "2301.00001"
    assert data[2]["category"] is None and data[1]["arxiv"] is None


def test_show(kb_dir, capsys):
    rc, out, _ = run(capsys, "show", "alphaprompt", "--taxonomy", kb_dir)
    assert rc == 0
    assert "alpha-prompt" in out and "Prompt > Textual prompt > Learnable text prompt" in out
    assert "coop (category-reference)" in out and "2,048 on ViT-B/16" in out
    assert "top-1 accuracy = 71.5 on fixture set" in out
    assert "Example, A., & Tester, B. (2023)." in out
    rc, out, _ = run(capsys, "show", "beta-adapter", "--format", "json", "--taxonomy", kb_dir)
    assert json.loads(out)["doi"] == "10.1234/jfs.2024.001"


def test_show_unknown_suggests(kb_dir, capsys):
    rc, out, err = run(capsys, "show", "alpha-promt", "--taxonomy", kb_dir)
    assert rc == 2 and out == ""
    assert err.startswith("error: unknown method 'alpha-promt' (did you mean alpha-prompt")
    assert len(err.splitlines()) == 1


def test_cite_scopes_and_formats(kb_dir, capsys):
    rc, out, _ = run(capsys, "cite", "alpha-prompt", "Beta", "--taxonomy", kb_dir)
    bib = pybtex.database.parse_string(out, "bibtex")
    assert rc == 0 and list(bib.entries) == ["alpha-prompt", "beta-adapter"]
    _, out, _ = run(capsys, "cite", "--category", "prompt", "--format", "csljson", "--taxonomy", kb_dir)
    assert [i["id"] for i in json.loads(out)] == ["alpha-prompt", "hostile-chars"]
    _, out, _ = run(capsys, "cite", "--all", "--format", "text", "--taxonomy", kb_dir)
    lines = out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("Xing, J., Liu, J.")
    _, out, _ = run(capsys, "cite", "--all", "--taxonomy", kb_dir)
    assert list(pybtex.database.parse_string(out, "bibtex").entries)[0] == "xing2024survey"
    _, out, _ = run(capsys, "cite", "xing2024survey", "--format", "text", "--taxonomy", kb_dir)
    assert "Computers & Graphics, 119, 103885" in out


@pytest.mark.parametrize(
    "args, fragment",
    [([], "exactly one of them"), (["alpha-prompt", "--all"], "exactly one of them"), (["nope"], "unknown method 'nope'"),
     (["--category", "adapter.crossmodal"], "has no records")],
)
def test_cite_errors(kb_dir, capsys, args, fragment):
    rc, out, err = run(capsys, "cite", *args, "--taxonomy", kb_dir)
    assert rc == 2 and out == "" and fragment in err


def test_tree_counts(kb_dir, capsys):
    rc, out, _ = run(capsys, "tree", "--taxonomy", kb_dir)
    assert rc == 0
    counts = {}
    for line in out.splitlines()[1:]:
        if line.startswith("uncategorised"):
            continue
        counts[line.split()[0]] = int(line.rsplit("(", 1)[1].rstrip(")"))
    assert counts["prompt"] == 2 and counts["prompt.textual"] == 1 and counts["prompt.visual"] == 1
    assert counts["prompt.visual.pixel"] == 1 and counts["prompt.textual.learnable"] == 1 and counts["prompt.multimodal"] == 0
    assert counts["adapter"] == 1 and counts["adapter.unimodal"] == 1 and counts["adapter.crossmodal"] == 0
    assert len(counts) == 14
    assert out.splitlines()[-1].startswith("uncategorised (baselines): gamma-probe")
    assert "reconstruction" in out.splitlines()[0]


def test_rich_output_in_a_terminal(kb_dir, capsys, monkeypatch):
    from rich.console import Console

    buffer = io.StringIO()
    monkeypatch.setattr(kb_commands, "_console", lambda: Console(file=buffer, force_terminal=True, width=160, color_system=None))
    assert main(["tree", "--taxonomy", kb_dir]) == 0
    assert "├──" in buffer.getvalue() or "└──" in buffer.getvalue()
    assert "prompt.visual.pixel" in buffer.getvalue()
    buffer.truncate(0)
    assert main(["list", "--taxonomy", kb_dir]) == 0
    assert "4 method(s)" in buffer.getvalue() and "┃" in buffer.getvalue() or "│" in buffer.getvalue()
    buffer.truncate(0)
    assert main(["show", "gamma-probe", "--taxonomy", kb_dir]) == 0
    assert "Dana Gamma" in buffer.getvalue()
    assert capsys.readouterr().out == ""  # nothing leaked to plain stdout


def test_validate_ok(kb_dir, capsys):
    rc, out, err = run(capsys, "validate", "--taxonomy", kb_dir)
    assert (rc, err) == (0, "")
    assert out.strip() == "ok: 4 records, 14 categories (9 leaves), 19 tasks, 4 paradigms"
    rc, out, _ = run(capsys, "validate", kb_dir)  # a KB directory as the path
    assert rc == 0 and out.startswith("ok: 4 records")


def test_validate_errors_in_a_kb_dir(tmp_path, capsys):
    kb_dir = make_kb(tmp_path)
    (kb_dir / "methods" / "alpha-prompt.yaml").write_text((kb_dir / "methods" / "alpha-prompt.yaml").read_text().replace("year: 2023", "year: 3023"))
    (kb_dir / "methods" / "beta-adapter.yaml").write_text((kb_dir / "methods" / "beta-adapter.yaml").read_text().replace("adapter.unimodal", "adapter.fusion"))
    rc, out, err = run(capsys, "validate", str(kb_dir))
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {kb_dir}/methods/alpha-prompt.yaml:8 field 'year': ") or "alpha-prompt.yaml:8 field 'year'" in lines[0]
    assert "beta-adapter.yaml:10 field 'category': unknown category 'adapter.fusion'" in lines[1]


def test_schema_command(capsys):
    rc, out, _ = run(capsys, "schema")
    schema = json.loads(out)
    assert rc == 0 and schema["title"] == "MethodRecord" and schema["additionalProperties"] is False
    rc, out, _ = run(capsys, "schema", "--kind", "categories")
    assert "signature_keys" in json.loads(out)["properties"]
