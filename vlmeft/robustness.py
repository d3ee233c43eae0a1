"""The hostile-input run: every input of the corpus through the record loader.

Each input is checked the way ``vlmeft validate FILE`` checks it (:func:`check_kb` with
the file as an extra record, against the shipped category tree, tasks and paradigms but
no shipped records, so the result depends on the input alone). An input counts as a
**failure** when the loader

- raises anything but :class:`~vlmeft.errors.VlmeftError` (a traceback),
- accepts what the corpus expects it to refuse, or refuses what it expects accepted,
- gives an error that does not name the file, spans lines, or misses the expected text,
- or takes longer than :data:`TIME_LIMIT_S`.

Inputs come from three places: the committed corpus (``tests/data/hostile``, one file
per hostile kind, expectations in its ``manifest.json``), inputs generated here because
they are too large to commit (a 10 MB record, 60,000 unknown keys, 100,000 list
entries), and seeded byte-level mutations of valid records and of the corpus (any
outcome is fine as long as it is clean; an accepted mutant must still satisfy the
record invariants).

``python -m vlmeft.robustness`` writes ``results/robustness.json``; the docs site shows
its counts on the robustness page.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT / "tests" / "data" / "hostile"
GOOD_RECORDS = REPO_ROOT / "tests" / "data" / "kb" / "good" / "methods"
RESULTS = REPO_ROOT / "results" / "robustness.json"
BASE_FILES = ("categories.yaml", "tasks.yaml", "paradigms.yaml", "survey.yaml", "topics.yaml")
TIME_LIMIT_S = 20.0  # CPU seconds per input; the largest inputs take a few: a hang is what this catches
MAX_ERROR_LINES = 25  # the loader lists at most 20 schema problems per file, plus one summary line
BIG_BYTES = 10 * 1024 * 1024

# Fragments spliced into mutants: the shapes of the corpus's attacks.
SPLICES = (b"&a ", b"*a", b"<<: ", b"!!python/object/apply:os.system [x]", b"!include x", b"[[[[[[[[",
           b"\x00", b"\x1b[2J", "\u202e".encode(), "\u2028".encode(), b"\xff\xfe", b"javascript:alert(1)",
           b"data:text/html,x", b"../../", b"os:system", b"<script>window.__pwned=1</script>", b"\n---\n",
           b"9" * 4400, b".nan", b"? [a]\n: b\n", b": :", b"\t", b"\"\\e\"", b"%TAG !! tag:x:\n")


@dataclass
class Outcome:
    """What the loader did with one input."""

    name: str
    kind: str
    expect: str  # refused | accepted | clean (either, as long as it is clean)
    status: str  # refused | accepted | crashed
    ok: bool
    cpu_seconds: float
    lines: int  # error lines the input produced
    detail: str  # the first error line, or why the outcome is a failure


@dataclass
class Case:
    name: str
    kind: str
    data: bytes
    expect: str
    at: str | None = None
    match: str | None = None
    file: str | None = None  # the file name to write it under (default: name); mutants keep their stem

    @property
    def filename(self) -> str:
        return self.file or self.name


def scratch_kb(root: Path) -> Path:
    """A knowledge base with the shipped base files and no method records."""
    from vlmeft.kb.load import shipped_dir

    kb = root / "kb"
    (kb / "methods").mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        if (shipped_dir() / name).is_file():
            shutil.copy(shipped_dir() / name, kb / name)
    return kb


# ---------------------------------------------------------------------------------------
# The inputs
# ---------------------------------------------------------------------------------------


def load_manifest(corpus: Path = CORPUS) -> dict[str, dict[str, Any]]:
    """``manifest.json``: file name -> kind, what, expect, at, match."""
    path = corpus / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as err:
        raise VlmeftError(f"cannot read the hostile-corpus manifest: {err}", where=str(path)) from None


def corpus_cases(corpus: Path = CORPUS) -> list[Case]:
    manifest = load_manifest(corpus)
    on_disk = sorted(p.name for p in corpus.glob("*.yaml"))
    if sorted(manifest) != on_disk:
        missing = sorted(set(on_disk) ^ set(manifest))
        raise VlmeftError(f"manifest.json and the corpus files disagree about {', '.join(missing)}", where=str(corpus))
    return [Case(name, e["kind"], (corpus / name).read_bytes(), e["expect"], e.get("at"), e.get("match"))
            for name, e in manifest.items()]


def _record(record_id: str) -> str:
    return (f"id: {record_id}\ntitle: A Generated Record\nauthors: [Ada Example]\nvenue: Conference on Tests\n"
            "venue_type: conference\nyear: 2023\nparadigm: prompt\ncategory: prompt.textual.learnable\n"
            "modalities: [text]\ntasks: [image-classification]\nsummary: Generated.\n"
            "implementation: {id: coop, fidelity: category-reference}\n")


def generated_cases() -> list[Case]:
    """Inputs too large to commit, built on the fly."""
    line = "  " + "x" * 97 + "\n"
    big = (_record("oversized-10mb").replace("summary: Generated.\n", "summary: >-\n")
           + line * (BIG_BYTES // len(line) + 1)).encode()
    wide = (_record("many-unknown-keys") + "".join(f"k{i}: 1\n" for i in range(60_000))).encode()
    many = _record("long-list").replace("tasks: [image-classification]", "tasks: [" + ", ".join(["x"] * 100_000) + "]")
    long_title = _record("long-title").replace("A Generated Record", "t" * 900_000)
    return [
        Case("oversized-10mb.yaml", "size", big, "refused", ":", "over the 1000000-byte limit"),
        Case("many-unknown-keys.yaml", "size", wide, "refused", ":13 field 'k0'", "unknown key 'k0'"),
        Case("long-list.yaml", "size", many.encode(), "refused", ":10 field 'tasks'", "at most 500 items"),
        Case("long-title.yaml", "size", long_title.encode(), "refused", ":2 field 'title'", "at most 500"),
    ]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip, insert, delete, truncate, duplicate or splice."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 3:
            del buf[pos:]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randint(1, 64)]
        else:
            buf[pos:pos] = rng.choice(SPLICES)
    return bytes(buf)


def fuzz_cases(n: int, seed: int = 0, corpus: Path = CORPUS) -> list[Case]:
    """``n`` seeded mutants of the valid fixture records and of the corpus files."""
    rng = random.Random(seed)
    seeds = sorted(GOOD_RECORDS.glob("*.yaml")) + sorted(corpus.glob("*.yaml"))
    cases = []
    for i in range(n):
        source = rng.choice(seeds)
        # The mutant keeps its source's file name, so the id == file stem rule does not
        # refuse every mutant of a valid record before the interesting checks run.
        cases.append(Case(f"mutant-{seed}-{i:04d}", "mutation", mutate(source.read_bytes(), rng), "clean",
                          file=source.name))
    return cases


# ---------------------------------------------------------------------------------------
# Checking one input
# ---------------------------------------------------------------------------------------


def record_invariants(record: Any) -> str | None:
    """What no accepted record may hold, whatever the loader's rules say; None if clean."""
    from vlmeft import registry

    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    data = record.model_dump()
    walk(data)
    for text in texts:
        for ch in text:
            cp = ord(ch)
            if (cp < 0x20 and ch not in "\n\t") or 0x7F <= cp <= 0x9F or cp in (0x2028, 0x2029) \
                    or 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069:
                return f"accepted text with character U+{cp:04X}"
    for key in ("url", "code"):
        if data.get(key) and not data[key].startswith("https://"):
            return f"accepted a non-https {key}"
    for res in data.get("results") or []:
        if ":" in res["source"][:20] and "://" in res["source"] and not res["source"].startswith("https://"):
            return "accepted a non-https result source"
    impl = data.get("implementation")
    if impl and not registry.is_registered(impl["id"]):
        return f"accepted unregistered implementation {impl['id']!r}"
    for key in ("id", "paradigm", "category"):
        value = data.get(key) or ""
        if "/" in value or "\\" in value or ".." in value:
            return f"accepted a path-like {key} {value!r}"
    return None


def check_case(case: Case, kb_dir: Path, workdir: Path) -> Outcome:
    """Write ``case`` to a file under ``workdir`` and validate it as ``vlmeft validate`` would."""
    from vlmeft.kb.load import check_kb, load_record
    from vlmeft.kb.safe_yaml import display_path

    folder = Path(tempfile.mkdtemp(dir=workdir))
    path = folder / case.filename
    path.write_bytes(case.data)
    shown = display_path(path)
    start = time.process_time()  # CPU time: a busy shared machine must not turn into failures
    try:
        _, errors = check_kb(kb_dir, [path])
        status, crash = ("refused" if errors else "accepted"), None
    except Exception as err:  # noqa: BLE001 - anything but VlmeftError escaping is the failure we look for
        errors, status, crash = [], "crashed", f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    seconds = time.process_time() - start
    lines = [f"error: {e}" for e in errors]
    problem = crash
    if problem is None and seconds > TIME_LIMIT_S:
        problem = f"took {seconds:.1f} s of CPU (limit {TIME_LIMIT_S:.0f} s)"
    if problem is None and case.expect != "clean" and status != case.expect:
        problem = f"expected {case.expect}, got {status}"
    if problem is None and lines:
        bad = [ln for ln in lines if "\n" in ln or "\r" in ln or not ln.startswith(f"error: {shown}")]
        if bad:
            problem = f"error line does not name the file or spans lines: {bad[0][:200]!r}"
        elif len(lines) > MAX_ERROR_LINES:
            problem = f"{len(lines)} error lines for one file"
        elif case.expect == "refused" and case.match and not (
                lines[0].startswith(f"error: {shown}{case.at or ''}") and case.match in lines[0]):
            problem = f"expected '{shown}{case.at}' and {case.match!r}, got {lines[0][:200]!r}"
    if problem is None and status == "accepted":
        try:
            problem = record_invariants(load_record(path))
        except VlmeftError as err:
            problem = f"check_kb accepted what load_record refuses: {err}"
    shutil.rmtree(folder)
    detail = problem or (lines[0][: 300] if lines else "")
    return Outcome(case.name, case.kind, case.expect, status, problem is None, round(seconds, 4), len(lines), detail)


def iter_outcomes(cases: list[Case], kb_dir: Path | None = None) -> Iterator[Outcome]:
    """Check every case in a scratch folder (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="vlmeft-robustness-") as tmp:
        root = Path(tmp)
        kb = kb_dir or scratch_kb(root)
        work = root / "inputs"
        work.mkdir()
        for case in cases:
            yield check_case(case, kb, work)


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """The counts the robustness page shows, plus every failure in full."""
    by_kind: dict[str, dict[str, int]] = {}
    for o in outcomes:
        k = by_kind.setdefault(o.kind, {"inputs_tried": 0, "refused": 0, "accepted": 0, "failures": 0})
        k["inputs_tried"] += 1
        if o.status in ("refused", "accepted"):
            k[o.status] += 1
        if not o.ok:  # a crash is always a failure (check_case sets its problem)
            k["failures"] += 1
    from vlmeft import __version__

    return {
        "inputs_tried": len(outcomes),
        "refused": sum(o.status == "refused" for o in outcomes),
        "accepted": sum(o.status == "accepted" for o in outcomes),
        "failures": sum(not o.ok for o in outcomes),
        "by_kind": dict(sorted(by_kind.items())),
        "slowest_cpu_seconds": max((o.cpu_seconds for o in outcomes), default=0.0),
        "failed": [asdict(o) for o in outcomes if not o.ok],
        "vlmeft_version": __version__,
        "command": "python -m vlmeft.robustness",
    }


# The code an outcome depends on (package-relative globs): the loader, its errors, this run.
_LOADER_CODE = ("kb/*.py", "errors.py", "registry.py", "robustness.py")


def fingerprint(fuzz: int, seed: int, corpus: Path = CORPUS, good: Path = GOOD_RECORDS) -> str:
    """The hash of what a run's outcomes depend on: the loader code, the corpus, the valid
    records the mutants start from, the shipped base files, the registered ids (a record
    may link only to those) and the run's settings. ``results/robustness.json`` stores it."""
    import vlmeft
    from vlmeft import registry
    from vlmeft.fingerprint import files
    from vlmeft.fingerprint import fingerprint as digest
    from vlmeft.kb.load import shipped_dir

    sources = (files(Path(vlmeft.__file__).resolve().parent, "vlmeft", _LOADER_CODE) + files(corpus, "corpus", ("*",))
               + files(good, "good", ("*.yaml",)) + [(f"taxonomy/{n}", shipped_dir() / n) for n in BASE_FILES])
    ids = [n for n in registry.names() if registry.entry(n).origin == registry.BUILTIN]
    return digest(sources, {"fuzz": fuzz, "seed": seed, "registered": ids})


def run(fuzz: int = 500, seed: int = 0, corpus: Path = CORPUS) -> dict[str, Any]:
    """Corpus + generated inputs + ``fuzz`` mutants: the summary dict, with the fingerprint
    of what made it."""
    cases = corpus_cases(corpus) + generated_cases() + fuzz_cases(fuzz, seed, corpus)
    summary = summarise(list(iter_outcomes(cases)))
    summary.update(fuzz=fuzz, seed=seed, fingerprint=fingerprint(fuzz, seed, corpus))
    return summary


def write_summary(summary: dict[str, Any], path: Path = RESULTS) -> Path:
    """Write atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(summary, indent=1) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmeft.robustness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", type=int, default=500, help="byte-level mutants to try (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        summary = run(args.fuzz, args.seed)
        write_summary(summary, args.out)
    except VlmeftError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{summary['inputs_tried']} inputs: {summary['refused']} refused, {summary['accepted']} accepted, "
          f"{summary['failures']} failures -> {args.out}")
    for failure in summary["failed"]:
        print(f"failure: {failure['name']}: {failure['detail']}", file=sys.stderr)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
