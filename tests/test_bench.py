"""`vlmeft bench`: the store survives kills, reruns skip finished cells, plans follow what
methods can do, every protocol produces its metrics, and the report aggregates honestly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import synthclip_available
from vlmeft.bench.plan import Selection, build_cells, probe, selected_plans
from vlmeft.bench.profiles import PROFILES, Profile, ProtocolPlan, get_profile
from vlmeft.bench.report import Groups, headline_table, load_rows, report_markdown
from vlmeft.bench.runner import run_bench, store_for
from vlmeft.bench.store import SCHEMA, ResultStore, read_results
from vlmeft.cli import main
from vlmeft.errors import VlmeftError

REPO = Path(__file__).resolve().parents[1]


def _row(method="coop", task="digits", protocol="few-shot", shots=1, seed=1, **metrics):
    return {"schema": SCHEMA, "method": method, "task": task, "protocol": protocol, "shots": shots, "seed": seed,
            "backbone": "b", "backbone_weights": "w", "train_seconds": 0.0, "trainable_params": 0, **metrics}


# ----------------------------------------------------------------------------- store
def test_store_replaces_a_cell_and_clears_its_failure(tmp_path):
    store = ResultStore(tmp_path / "x.json", {"schema": SCHEMA, "profile": "t", "config_hash": "h"})
    cell = {k: v for k, v in _row().items() if k in ("method", "task", "protocol", "shots", "seed", "backbone",
                                                       "backbone_weights")}
    store.add_failure(cell, "boom")
    assert len(store.read()["failures"]) == 1
    store.add_row(_row(accuracy=0.5))
    store.add_row(_row(accuracy=0.7))  # the same cell again: replaced, not duplicated
    store.add_row(_row(seed=2, accuracy=0.6))
    doc = read_results(store.path)
    assert [(r["seed"], r["accuracy"]) for r in doc["rows"]] == [(1, 0.7), (2, 0.6)]
    assert doc["failures"] == []
    assert doc["profile"] == "t" and doc["config_hash"] == "h"
    assert len(store.finished()) == 2
    assert not list(tmp_path.glob("*.tmp"))
    assert oct(store.path.stat().st_mode & 0o777) != oct(0o600)  # readable by others, not mkstemp's 0600


def test_two_stores_on_one_file_merge_instead_of_overwriting(tmp_path):
    header = {"schema": SCHEMA, "profile": "t", "config_hash": "h"}
    a, b = ResultStore(tmp_path / "x.json", header), ResultStore(tmp_path / "x.json", header)
    a.add_row(_row(seed=1))
    b.add_row(_row(seed=2))
    assert len(a.finished()) == 2


def test_stale_temp_files_are_removed(tmp_path):
    store = ResultStore(tmp_path / "x.json", {"schema": SCHEMA})
    (tmp_path / ".bench-xabc.tmp").write_text("{torn")
    (tmp_path / "other.tmp").write_text("not ours")
    assert store.clean_stale_temps() == 1
    assert (tmp_path / "other.tmp").exists()


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "cannot read"),
    ('{"schema": 1}', "'rows' list"),
    ('{"schema": 99, "rows": []}', "schema"),
    ('{"schema": 1, "rows": [{"method": "coop"}]}', "rows[0]"),
])
def test_malformed_results_file_names_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(VlmeftError) as err:
        read_results(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


# -------------------------------------------------------------------------- profiles
def test_profiles_are_versioned_by_their_config_only():
    quick = get_profile("quick")
    assert quick.config_hash() == get_profile("quick").config_hash()
    assert len({p.config_hash() for p in PROFILES.values()}) == len(PROFILES)
    changed = Profile(name="quick", description="", plans=quick.plans, seeds=quick.seeds,
                      overrides={**quick.overrides, "coop": {"epochs": "1"}})
    assert changed.config_hash() != quick.config_hash()
    fewer = Profile(name="quick", description="", plans=quick.plans[:1], seeds=(1,), overrides=quick.overrides)
    assert fewer.config_hash() == quick.config_hash()  # which cells is not part of the version
    with pytest.raises(VlmeftError, match="unknown profile 'nope'"):
        get_profile("nope")


def test_profile_overrides_are_valid_settings():
    from vlmeft import registry

    for profile in PROFILES.values():
        for method in profile.overrides:
            if method != "*":
                registry.get(method).Config().apply_overrides(profile.overrides[method])


# ------------------------------------------------------------------------------ plan
def test_probe_reads_what_methods_can_do(tiny_vit, tiny_rn):
    zs = probe("zsclip", tiny_vit, {})
    assert zs.classification and zs.builds and not zs.uses_data and zs.new_classes
    lp = probe("linear-probe", tiny_vit, {})
    assert lp.uses_data and not lp.new_classes  # no text side: no novel classes
    assert probe("tip-adapter", tiny_vit, {}).uses_data  # training-free but reads the shots
    rc = probe("red-circle", tiny_vit, {})
    assert rc.grounding and not rc.classification
    vpt = probe("vpt", tiny_rn, {})
    assert not vpt.builds and "vision tokens" in vpt.reason


def test_cells_follow_capabilities(tiny_vit):
    profile = Profile(name="t", description="", seeds=(1, 2), plans=(
        ProtocolPlan("few-shot", ("digits",), (1, 4)),
        ProtocolPlan("base-to-novel", ("shapes",), (2,)),
        ProtocolPlan("retrieval", ("scenes",)),
        ProtocolPlan("grounding", ("scenes",)),
    ))
    cells = build_cells(profile, Selection(methods=["zsclip", "linear-probe", "red-circle"]), tiny_vit, warn=False)
    got = {(c.method, c.protocol, c.shots, c.seed) for c in cells}
    assert got == {
        ("zsclip", "few-shot", 0, 1), ("zsclip", "base-to-novel", 0, 1), ("zsclip", "retrieval", 0, 1),
        ("zsclip", "grounding", 0, 1), ("red-circle", "grounding", 0, 1),
        *{("linear-probe", "few-shot", k, s) for k in (1, 4) for s in (1, 2)},
    }
    narrowed = build_cells(profile, Selection(methods=["linear-probe"], shots=[2], seeds=[3]), tiny_vit, warn=False)
    assert {(c.task, c.shots, c.seed) for c in narrowed} == {("digits", 2, 3)}


@pytest.mark.parametrize("selection, fragment", [
    (Selection(methods=["coopp"]), "unknown method 'coopp'"),
    (Selection(tasks=["digitz"]), "unknown task 'digitz'"),
    (Selection(protocols=["retrieval"]), "has no 'retrieval' protocol"),
    (Selection(tasks=["scenes"]), "fits none of the selected protocols"),
    (Selection(shots=[0]), "shots must be positive"),
])
def test_bad_selection_is_one_clear_error(selection, fragment):
    with pytest.raises(VlmeftError, match=fragment):
        selected_plans(get_profile("test"), selection)


@pytest.mark.parametrize("argv, fragment", [
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
    (["--tasks", "nosuch"], "unknown task 'nosuch'"),
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["--shots", "1,x"], "expected comma-separated integers"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, fragment):
    assert main(["bench", "--profile", "test", "--out", str(tmp_path), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ every protocol runs
def test_every_protocol_measures_its_metrics(tiny_vit, tmp_path):
    profile = Profile(name="t", description="", seeds=(1,), plans=(
        ProtocolPlan("base-to-novel", ("shapes",), (1,)),
        ProtocolPlan("cross-domain", ("shapes",), (1,)),
        ProtocolPlan("retrieval", ("scenes",)),
        ProtocolPlan("grounding", ("scenes",)),
    ), overrides={"coop": {"epochs": "1", "n_ctx": "2"}})
    summary = run_bench(profile, Selection(methods=["zsclip", "coop", "red-circle"]), tmp_path, backbone=tiny_vit,
                        progress=False)
    assert not summary.failed, summary.failed
    rows = {(r["method"], r["protocol"]): r for r in read_results(summary.path)["rows"]}
    b2n = rows[("coop", "base-to-novel")]
    assert 0 <= b2n["base"] <= 1 and 0 <= b2n["novel"] <= 1
    assert math.isclose(b2n["hm"], 0 if min(b2n["base"], b2n["novel"]) == 0 else
                        2 * b2n["base"] * b2n["novel"] / (b2n["base"] + b2n["novel"]))
    assert b2n["trainable_params"] == 2 * tiny_vit.text_width and b2n["train_seconds"] > 0
    zs_b2n = rows[("zsclip", "base-to-novel")]
    assert zs_b2n["base"] == b2n["zero_shot_base"] and zs_b2n["novel"] == b2n["zero_shot_novel"]
    cd = rows[("coop", "cross-domain")]
    assert set(cd["domains"]) == {"checkered", "small-noisy"}
    assert math.isclose(cd["shifted_mean"], sum(cd["domains"].values()) / 2)
    ret = rows[("zsclip", "retrieval")]
    assert all(0 <= ret[k] <= 1 for k in ("r1", "r5", "i2t_r1", "t2i_r5")) and ret["r5"] >= ret["r1"]
    for method in ("zsclip", "red-circle"):
        g = rows[(method, "grounding")]
        assert 0 <= g["accuracy"] <= 1 and 0.3 < g["chance"] < 0.55  # 2-3 boxes per scene
    assert rows[("zsclip", "grounding")]["variant"] == "crop-and-compare"


def test_cells_measured_with_other_code_are_measured_again(tiny_vit, tmp_path):
    profile = Profile(name="t", description="", seeds=(1,), plans=(ProtocolPlan("few-shot", ("digits",), (1,)),))
    first = run_bench(profile, Selection(methods=["zsclip"]), tmp_path, backbone=tiny_vit, progress=False)
    assert first.ran == 1
    assert run_bench(profile, Selection(methods=["zsclip"]), tmp_path, backbone=tiny_vit, progress=False).ran == 0
    doc = json.loads(first.path.read_text())
    doc["rows"][0]["code"] = "older"
    first.path.write_text(json.dumps(doc))
    again = run_bench(profile, Selection(methods=["zsclip"]), tmp_path, backbone=tiny_vit, progress=False)
    assert (again.ran, again.skipped) == (1, 0)
    assert len(read_results(first.path)["rows"]) == 1


@pytest.mark.parametrize(("method", "base"), [("cupl", "dclip.py"), ("fgvp", "red_circle.py"),
                                             ("promptsrc", "ivlp.py"), ("cocoop", "coop.py")])
def test_code_fingerprint_covers_the_method_classes_a_method_builds_on(method, base, tmp_path, monkeypatch):
    """A method subclassing another method's class is re-measured when that module changes."""
    from vlmeft.bench import cells

    files = cells.code_files(method)
    assert base in [f.name for f in files]
    # The fingerprint reads the files: a changed base module gives another fingerprint.
    before = cells.code_fingerprint.__wrapped__(method)
    target = next(f for f in files if f.name == base)
    copy = tmp_path / base
    copy.write_bytes(target.read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(cells, "code_files", lambda m: [copy if f == target else f for f in files])
    assert cells.code_fingerprint.__wrapped__(method) != before


def test_worker_processes_measure_the_same_numbers(tmp_path):
    """--jobs 2: cells run in spawned workers give the rows one process gives (seeded)."""
    from vlmeft.backbone import load_backbone

    name, pretrained = ("synthclip-tiny", "default") if synthclip_available() else ("vlmeft-tiny-vit", None)
    backbone = load_backbone(name, pretrained)
    profile = get_profile("test")
    selection = Selection(methods=["coop", "linear-probe"], shots=[1], seeds=[1])
    one = run_bench(profile, selection, tmp_path / "one", backbone=backbone, progress=False)
    two = run_bench(profile, selection, tmp_path / "two", backbone=backbone, progress=False, jobs=2)
    assert (one.ran, two.ran, len(two.failed)) == (2, 2, 0)
    metrics = ("method", "accuracy", "trainable_params", "code", "backbone_weights")
    assert ([{k: r[k] for k in metrics} for r in read_results(one.path)["rows"]]
            == [{k: r[k] for k in metrics} for r in read_results(two.path)["rows"]])


# ------------------------------------------------------------------------------ report
def test_report_aggregates_over_seeds():
    rows = [_row("coop", shots=16, seed=s, accuracy=a) for s, a in ((1, 0.5), (2, 0.7))]
    rows += [_row("zsclip", shots=0, seed=1, accuracy=0.4)]
    rows += [_row("coop", "colors", "base-to-novel", 16, s, base=b, novel=n) for s, b, n in ((1, 0.9, 0.3), (2, 0.7, 0.5))]
    g = Groups(rows)
    mean, std, n = g.stat("coop", "digits", "few-shot", 16, "accuracy")
    assert (round(mean, 6), round(std, 6), n) == (0.6, 0.1, 2)  # population std, as CoOp reports
    hm = g.stat("coop", "colors", "base-to-novel", 16, "hm")[0]
    assert math.isclose(hm, 2 * 0.8 * 0.4 / 1.2)  # HM of the mean base and mean novel
    table = headline_table(rows)
    assert "| coop | 60.0 ± 10.0 |" in table and "| zsclip | 40.0* |" in table
    text = report_markdown(rows)
    assert "## Base-to-novel: colors" in text and "53.3" in text
    # Stability: coop's few-shot std 10.0 and its per-seed HMs 45.0 / 58.3 (std 6.67) average to 8.33.
    assert "| coop | 2 | 8.33 | 10.00 |" in text


def test_report_never_averages_across_backbone_weights():
    rows = [_row("coop", shots=16, seed=1, accuracy=0.5), {**_row("coop", shots=16, seed=2, accuracy=0.9),
                                                          "backbone_weights": "other"}]
    text = report_markdown(rows)
    assert "# Backbone b (weights other)" in text and "# Backbone b (weights w)" in text
    assert "| coop | 50.0 |" in text and "| coop | 90.0 |" in text
    with pytest.raises(VlmeftError, match="mix backbones"):
        headline_table(rows)


# ------------------------------------------------------------------- kill and resume
def _bench_cmd(out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vlmeft", "bench", "--profile", "test", "--out", str(out), "--no-progress",
           "--threads", "1"]
    if not synthclip_available():  # the shipped backbone, once its weights exist
        cmd += ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none"]
    return cmd


def _rows(out: Path) -> list[dict]:
    files = list(out.glob("*.json"))
    return read_results(files[0])["rows"] if files else []


def _start_and_kill_after(cmd: list[str], out: Path, n_rows: int, sig: int, timeout: float = 240) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while len(_rows(out)) < n_rows:
        assert proc.poll() is None, f"bench ended before {n_rows} rows: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no finished cell in time"
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


def test_killed_runs_keep_finished_cells_and_resume(tmp_path):
    out = tmp_path / "bench"
    cmd = _bench_cmd(out)
    total = 1 + 2 * 2 * 2  # zsclip once; linear-probe and coop at 2 shots x 2 seeds

    # SIGTERM (with two worker processes): a clean stop, exit 130, finished cells on disk.
    proc = _start_and_kill_after([*cmd, "--jobs", "2"], out, 1, signal.SIGTERM)
    err = proc.stderr.read()
    kept = _rows(out)
    assert 1 <= len(kept) < total, err
    assert proc.returncode == 130 and "interrupted" in err, err

    # SIGKILL: no chance to clean up; the file is still whole and holds every finished cell.
    proc = _start_and_kill_after(cmd, out, len(kept) + 1, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    after_kill = _rows(out)
    assert len(kept) < len(after_kill) < total
    assert all(r in after_kill for r in kept)  # byte-for-byte the same rows: not rerun

    # Rerun: skips what finished, runs the rest, and leaves those rows untouched.
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(after_kill)} already finished, {total - len(after_kill)} to run" in done.stderr
    final = _rows(out)
    assert len(final) == total
    assert all(r in final for r in after_kill)
    assert not list(out.glob("*.tmp")) and len(list(out.glob("*.json"))) == 1

    # And the report reads it back.
    assert main(["bench", "--report", "--profile", "test", "--out", str(out)]) == 0
    assert load_rows(out, "test") == final
    assert json.loads((out / store_for(out, get_profile("test")).path.name).read_text())["schema"] == SCHEMA
