"""README.md's counts and results tables are generated (``python -m vlmeft.readme``): a
hand edit of a generated number, or data that changed without regenerating, fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlmeft import facts, readme
from vlmeft.errors import VlmeftError
from vlmeft.kb.load import load_kb

ROOT = Path(__file__).resolve().parents[1]
KB = load_kb()


def _sources(kb=KB) -> readme.Sources:  # noqa: ANN001
    return readme.Sources(kb, ROOT / "results")


def test_readme_is_what_the_generator_writes():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rendered = readme.render(text, _sources())
    stale = readme.stale_blocks(text, rendered)
    assert rendered == text, f"README.md is out of date in {stale}: run python -m vlmeft.readme --write"
    names = {m.group("name") for m in readme.MARK.finditer(text)}
    assert names == set(readme.GENERATORS), "every generator fills a block of README.md"


def test_a_hand_edited_number_is_caught_and_restored():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count("| zsclip | 52.2 | 52.2 | 52.2 | 52.2 ± 0.0 | – |") == 1
    edited = text.replace("| zsclip | 52.2 | 52.2 | 52.2 | 52.2 ± 0.0 | – |", "| zsclip | 52.2 | 52.2 | 52.2 | 53.2 ± 0.0 | – |")
    rendered = readme.render(edited, _sources())
    assert rendered == text and readme.stale_blocks(edited, rendered) == ["digits-4shot"]
    # Hand-written prose outside the blocks is kept as it is.
    prose = text.replace("## Quick start", "## Quick start (edited by hand)")
    assert readme.render(prose, _sources()) == prose


def test_a_new_record_changes_the_counts():
    extra = KB.methods["tpt"].model_copy(update={"id": "new-method"})
    view = SimpleNamespace(methods={**KB.methods, "new-method": extra}, categories=KB.categories)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rendered = readme.render(text, _sources(view))
    assert readme.stale_blocks(text, rendered) == ["count:implementations", "count:records"]
    n = len(KB.methods)
    assert f"{n + 1} method records" in rendered and f"of the {n + 1} records" in rendered


@pytest.mark.parametrize(("text", "message"), [
    ("<!-- generated:nope -->x<!-- /generated:nope -->", "unknown generated block 'nope'"),
    ("<!-- generated:digits-4shot -->\nx\n", "not closed"),
])
def test_bad_markers_are_errors(text, message):
    with pytest.raises(VlmeftError, match=message):
        readme.render(text, _sources())


def test_the_site_states_the_same_counts():
    from vlmeft.sitegen.generate import make_context
    from vlmeft.sitegen.method_pages import methods_index

    counts = facts.counts(KB)
    page = methods_index(make_context(KB))
    readme_text = (ROOT / "README.md").read_text(encoding="utf-8")
    for phrase in (facts.records_phrase(counts), facts.code_phrase(counts)):
        assert phrase in page and phrase in readme_text


def test_the_benchmark_script_prints_the_readme_table():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "digits_4shot.py"), "--table-only"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == readme.GENERATORS["digits-4shot"](_sources()).strip()


def test_check_mode_exit_status(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text("<!-- generated:count:records -->1 method records<!-- /generated:count:records -->\n")
    assert readme.main(["--readme", str(stale), "--check"]) == 1
    assert readme.main(["--readme", str(stale), "--write"]) == 0
    assert readme.main(["--readme", str(stale), "--check"]) == 0
    assert f"{len(KB.methods)} method records" in stale.read_text()
