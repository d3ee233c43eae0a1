"""End to end on the CoOp miniature: `vlmeft run` on all 15 datasets, and
`vlmeft bench --suite coop` writing and reporting the four protocol tables."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from vlmeft.bench.coop_report import suite_markdown
from vlmeft.bench.report import load_rows
from vlmeft.bench.reported import from_kb, from_table, nothing
from vlmeft.cli import main
from vlmeft.data import coop

TINY = ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"]
TEST_ONLY = {"imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"}


@pytest.mark.parametrize("dataset", coop.dataset_ids())
def test_run_coop_on_every_dataset(capsys, coop_root, dataset):
    """The done-when command, with one epoch (CoOp's paper schedule is 200) to stay fast and 4
    context tokens (16 plus a long class name overflow the tiny backbone's 24-token context)."""
    code = main(["run", "coop", "--task", f"coop:{dataset}", "--data-root", str(coop_root), "--shots", "2",
                 "--seed", "1", *TINY, "--set", "epochs=1", "--set", "n_ctx=4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["task"] == f"coop:{dataset}" and r["shots"] == 2 and r["method"] == "coop" and r["steps"] >= 1
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["zero_shot_accuracy"] <= 1.0
    if dataset in TEST_ONLY:  # trained on ImageNet, tested on this variant alone
        assert r["protocol"] == "domain-generalisation" and r["source"] == "coop:imagenet"
        assert list(r["targets"]) == [f"coop:{dataset}"] and "(trained on coop:imagenet)" in out
    else:
        assert r["protocol"] == "few-shot"


def test_test_only_dataset_refuses_few_shot(capsys, coop_root):
    code = main(["run", "zsclip", "--task", "coop:imagenet_r", "--data-root", str(coop_root), "--protocol",
                 "few-shot", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "test-only dataset (the papers train on coop:imagenet)" in err
    assert "--protocol domain-generalisation" in err and err.count("\n") == 1


def test_run_cross_dataset_prints_every_target(capsys, coop_root):
    code = main(["run", "zsclip", "--task", "coop:imagenet", "--data-root", str(coop_root), "--protocol",
                 "cross-dataset", "--shots", "16", *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert all(f"coop:{d}: zero-shot" in out for d in coop.dataset_ids()[1:11]) and "mean over 10 targets" in out


@pytest.fixture(scope="module")
def suite_run(coop_root, tmp_path_factory):
    """`vlmeft bench --suite coop` with zero-shot CLIP and a linear probe, seed 1, 2 shots,
    on a root that lacks Caltech101 (skipped) and ImageNet-A (a missing target)."""
    root = tmp_path_factory.mktemp("suite-root")
    for item in coop_root.iterdir():
        if item.name not in ("caltech-101", "imagenet-adversarial"):
            shutil.copytree(item, root / item.name)
    out = tmp_path_factory.mktemp("suite-out")
    argv = ["bench", "--suite", "coop", "--data-root", str(root), *TINY, "--methods", "zsclip", "linear-probe",
            "--seeds", "1", "--shots", "2", "--out", str(out)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()
    return root, out, argv, err.getvalue()


def test_bench_suite_writes_and_reports_the_four_tables(capsys, suite_run):
    root, out, argv, err = suite_run
    assert f"skip coop:caltech101: not found at {root / 'caltech-101'}" in err
    assert f"skip coop:imagenet_a: not found at {root / 'imagenet-adversarial'}" in err
    rows = load_rows(out, "coop")
    protocols = {(r["protocol"], r["method"]) for r in rows}
    assert protocols == {("few-shot", "zsclip"), ("few-shot", "linear-probe"), ("base-to-novel", "zsclip"),
                         ("cross-dataset", "zsclip"), ("domain-generalisation", "zsclip")}
    assert len([r for r in rows if r["protocol"] == "few-shot"]) == 2 * 10  # 10 datasets here, no Caltech
    dg = next(r for r in rows if r["protocol"] == "domain-generalisation")
    assert list(dg["missing_targets"]) == ["coop:imagenet_a"] and len(dg["targets"]) == 3
    tables = next(out.glob("coop-*.md")).read_text()
    # The same command again finds every cell finished.
    assert main(argv) == 0 and "0 to run" in capsys.readouterr().err
    assert main(["bench", "--suite", "coop", "--report", "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert report == tables
    for title in ("## Base-to-novel generalisation", "## Few-shot learning", "## Cross-dataset transfer",
                  "## Domain generalisation"):
        assert title in report
    assert "### Average over 10 datasets" in report and "### DescribableTextures" in report
    assert "| linear-probe |" in report.split("## Few-shot learning")[1].split("## Cross-dataset")[0]
    assert "| linear-probe |" not in report.split("## Few-shot learning")[0]  # no base-to-novel: no text side
    assert "ImageNetA" not in report.split("## Domain generalisation")[1]  # missing: no column


def test_tables_put_the_reported_number_beside_ours(suite_run):
    _, out, _, _ = suite_run
    rows = load_rows(out, "coop")
    zs = next(r for r in rows if r["method"] == "zsclip" and r["task"] == "coop:dtd" and r["protocol"] == "few-shot")
    lookup = from_table({("zsclip", "dtd", "few-shot", "accuracy", 2): 44.5,
                         ("zsclip", "average", "base-to-novel", "hm", None): 71.7,
                         ("zsclip", "imagenetv2", "domain-generalisation", "accuracy", None): 60.83})
    md = suite_markdown(rows, lookup)
    ours = 100 * zs["accuracy"]
    assert f"{ours:.2f}* · paper 44.50 (Δ {ours - 44.5:+.2f})" in md
    assert "· paper 71.70 (Δ " in md.split("### Average over 10 datasets")[1]
    assert "· paper 60.83 (Δ " in md.split("## Domain generalisation")[1]
    assert "· paper" not in suite_markdown(rows, nothing)


def test_reported_numbers_come_from_the_records():
    """The shipped records' controlled ids, read by the suite's lookup: CoOp's base-to-novel
    HM averaged over 11 datasets on ViT-B/16 is 71.66; backbones the vocabulary lacks
    (the embedded one) and unknown methods have none."""
    lookup = from_kb()
    assert lookup("coop", "average", "base-to-novel", "hm", "ViT-B-16", 16) == 71.66
    assert lookup("coop", "average", "base-to-novel", "hm", "synthclip-tiny", 16) is None
    assert lookup("no-such-method", "average", "base-to-novel", "hm", "ViT-B-16", 16) is None


def test_bench_suite_without_data_root_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(coop.ENV, raising=False)
    assert main(["bench", "--suite", "coop", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pass --data-root DIR or set VLMEFT_DATA" in err and err.count("\n") == 1
    assert main(["bench", "--suite", "coop", "--data-root", str(tmp_path), *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "none of the CoOp datasets is under the data root" in err and err.strip().endswith("page 'CoOp datasets')")


def test_reported_adapter_reads_values_objects_and_mappings():
    from vlmeft.bench.reported import _number

    class Rec:
        value = 71.66

    assert _number(71.66) == _number(Rec()) == _number({"value": 71.66}) == 71.66
    assert _number(None) is None and _number(True) is None and _number(float("nan")) is None


def test_fixture_layout_matches_datasets_md(coop_root):
    """Each reader's documented tree names the folders the miniature holds."""
    for r in coop.readers().values():
        assert (coop_root / r.folder).is_dir() and r.layout.startswith(f"{r.folder}/")
        for line in r.layout.splitlines()[1:]:
            name = line.split("-- ", 1)[1].split(" #")[0].strip().rstrip("/")
            if name.startswith("...") or name.endswith(".mat") or name in {"license_agreement.txt", "meta",
                                                                             "README.txt"}:
                continue
            assert (coop_root / r.folder / name).exists() or "|   " in line, (r.id, name)
    assert Path(coop_root / "imagenet" / "images" / "train").is_dir()


def test_site_renders_the_suite_tables_only_when_measured(tmp_path):
    from vlmeft.bench.store import SCHEMA, ResultStore
    from vlmeft.kb.load import load_kb
    from vlmeft.sitegen.generate import make_context, render
    from vlmeft.sitegen.suite_pages import DATASETS_PAGE, SUITE_PAGE

    kb = load_kb()
    site = render(make_context(kb, results_dir=tmp_path), {DATASETS_PAGE})
    assert SUITE_PAGE not in site.files and DATASETS_PAGE in str(site.nav) and SUITE_PAGE not in str(site.nav)
    store = ResultStore(tmp_path / "coop" / "coop-s1-x.json", {"schema": SCHEMA, "profile": "coop"})
    for seed, acc in ((1, 0.5), (2, 0.7)):
        store.add_row({"schema": SCHEMA, "method": "coop", "task": "coop:dtd", "protocol": "few-shot", "shots": 16,
                       "seed": seed, "backbone": "ViT-B-16", "backbone_weights": "tag:openai", "accuracy": acc})
    site = render(make_context(kb, results_dir=tmp_path), {DATASETS_PAGE})
    page = site.files[SUITE_PAGE]
    assert SUITE_PAGE in str(site.nav) and "### DescribableTextures" in page and "| coop | 60.00 ± 10.00 |" in page
