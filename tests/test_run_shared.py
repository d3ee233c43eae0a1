"""`vlmeft run` measures a cell with the benchmark's code (``CellRunner.measure``), so a
run and a benchmark row of the same cell agree; run-only parts (checkpoint, errors) hold."""

from __future__ import annotations

import json

import pytest

from vlmeft.bench.cells import CellRunner
from vlmeft.bench.plan import Cell
from vlmeft.cli import main
from vlmeft.data import protocol

TINY = ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"]
SETS = {"epochs": "2", "min_steps": "0", "n_ctx": "2"}  # a short CoOp run
SET_ARGS = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]


def _run_json(capsys, *argv: str) -> tuple[dict, str]:
    code = main(["run", *argv, "--json", *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), out


@pytest.fixture(scope="module")
def bench_runner():
    from vlmeft.backbone import load_backbone

    backbone = load_backbone("vlmeft-tiny-vit", None)
    return CellRunner(backbone, lambda name: SETS if name == "coop" else {})


def _row(runner: CellRunner, protocol_name: str) -> dict:
    bb = runner.backbone
    return runner.run(Cell("coop", "shapes", protocol_name, 1, 2, bb.name, bb.weights_id))


def test_base_to_novel_run_equals_the_bench_row(capsys, bench_runner, tmp_path):
    ckpt = tmp_path / "ckpt"
    result, out = _run_json(capsys, "coop", "--task", "shapes", "--shots", "1", "--seed", "2",
                            "--protocol", "base-to-novel", "--save", str(ckpt), *SET_ARGS)
    row = _row(bench_runner, "base-to-novel")
    assert (result["base_accuracy"], result["novel_accuracy"], result["hm"]) == (row["base"], row["novel"], row["hm"])
    assert (result["zero_shot_base_accuracy"], result["zero_shot_novel_accuracy"], result["zero_shot_hm"]) == \
        (row["zero_shot_base"], row["zero_shot_novel"], row["zero_shot_hm"])
    assert result["accuracy"] == result["hm"] and result["zero_shot_accuracy"] == result["zero_shot_hm"]
    assert (result["trainable_params"], result["epochs"], result["best_epoch"]) == \
        (row["trainable_params"], row["epochs"], row["best_epoch"])
    # The checkpoint is written right after training, before the label set switches to novel.
    from vlmeft.data.tasks import get_task

    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["classnames"] == protocol.base_novel(get_task("shapes"))[0].classnames
    assert f"saved checkpoint to {ckpt}" in out


def test_cross_domain_run_equals_the_bench_row(capsys, bench_runner):
    result, out = _run_json(capsys, "coop", "--task", "shapes", "--shots", "1", "--seed", "2",
                            "--protocol", "cross-domain", *SET_ARGS)
    row = _row(bench_runner, "cross-domain")
    assert result["accuracy"] == row["accuracy"] and result["zero_shot_accuracy"] == row["zero_shot_accuracy"]
    assert result["domain_accuracy"] == row["domains"] and result["zero_shot_domain_accuracy"] == row["zero_shot_domains"]
    assert result["shifted_mean"] == row["shifted_mean"]
    for dom, acc in row["domains"].items():
        assert f"  {dom}: zero-shot {100 * row['zero_shot_domains'][dom]:.2f}%  adapted {100 * acc:.2f}%" in out


@pytest.mark.parametrize("argv,message", [
    (["vpt", "--task", "digits", "--backbone", "vlmeft-tiny-rn", "--pretrained", "none"], "needs vision tokens"),
    (["coop", "--task", "digits", "--shots", "0"], "--shots: shots must be positive"),
    (["coop", "--task", "digits", "--set", "n_ctx=two"], "--set: Config.n_ctx='two'"),
])
def test_run_errors_stay_one_line(capsys, argv, message):
    code = main(["run", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_cross_domain_needs_shifted_domains(capsys, tmp_path):
    import numpy as np
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    code = main(["run", "zsclip", "--task", f"imagefolder:{tmp_path}", "--shots", "1", "--protocol", "cross-domain",
                 *TINY])
    out, err = capsys.readouterr()
    assert code == 2 and "has no shifted test domains" in err and err.count("\n") == 1
