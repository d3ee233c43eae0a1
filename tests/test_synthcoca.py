"""synthcoca-tiny: pretraining on captions and scene-fact questions (smoke, exact resume,
answer-only loss), the compact two-table weight format with checksum, and the shipped
weights' size and recorded quality bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmeft.backbone.synthcoca import pretrain as P
from vlmeft.backbone.synthcoca.recipe import Recipe
from vlmeft.backbone.synthcoca.weights import pack, state_dict, unpack, vocabulary_ids
from vlmeft.cli import main
from vlmeft.errors import VlmeftError

SMOKE = ["backbone", "pretrain", "--model", "synthcoca-tiny", "--steps", "4", "--batch-size", "8", "--pool-size",
         "200", "--warmup", "1", "--checkpoint-every", "2", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthcoca") / "full"
    assert main([*SMOKE, "--out", str(out)]) == 0
    return out


def test_question_rows_are_scored_on_the_answer_only():
    recipe = Recipe(batch_size=32, pool_size=200, qa_fraction=0.5)
    data = P.prepare_data(recipe)
    batch = P.batch_at(0, data, recipe)
    questions = (~batch.caption_rows).nonzero().flatten().tolist()
    assert questions and batch.caption_rows.any()
    for row in questions:
        scored = (batch.labels[row] != P.IGNORE).nonzero().flatten()
        # the scored targets are the tokens after the "?" (the answer) and the end token
        ask = (batch.tokens[row] == int(data.lookup[P.tokenize(["?"])[0, 1]])).nonzero().flatten()
        assert len(ask) == 1 and int(scored.min()) == int(ask[0]) and len(scored) >= 2
    for row in batch.caption_rows.nonzero().flatten().tolist():
        assert int((batch.labels[row] != P.IGNORE).sum()) == int((batch.tokens[row] != 0).sum()) - 1
    again = P.batch_at(0, P.prepare_data(recipe), recipe)  # a pure function of (seed, step)
    assert torch.equal(again.tokens, batch.tokens) and torch.equal(again.labels, batch.labels)


def test_smoke_run_exports_checksummed_compact_weights(smoke_run):
    info = json.loads((smoke_run / "weights.json").read_text())
    assert info["format"] == "vlmeft-coca-compact-v1" and info["recipe"]["steps"] == 4
    full = state_dict(smoke_run)
    assert full["text.token_embedding.weight"].shape == (49408, 128)
    assert full["text_decoder.text_projection"].shape == (128, 49408)
    ids = vocabulary_ids(smoke_run)
    assert len(ids) == info["stored_token_ids"] and int(full["text_decoder.text_projection"][:, ids].abs().sum()) > 0
    unused = torch.ones(49408, dtype=torch.bool)
    unused[ids] = False
    assert full["text_decoder.text_projection"][:, unused].abs().max() == 0  # zeros: decoding is restricted
    # pack -> unpack round trip (fp16) and tamper detection
    again = unpack(pack(full, ids), 49408)
    assert all(torch.allclose(again[k], full[k], atol=1e-3) for k in full)
    path = smoke_run / info["file"]
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 1
    tampered = smoke_run.parent / "tampered"
    tampered.mkdir()
    (tampered / info["file"]).write_bytes(bytes(blob))
    (tampered / "weights.json").write_text(json.dumps(info))
    with pytest.raises(VlmeftError, match="sha256 mismatch"):
        state_dict(tampered)


def test_an_interrupted_run_resumes_to_the_same_weights(smoke_run, tmp_path, capsys):
    out = tmp_path / "resumed"
    assert main([*SMOKE, "--out", str(out), "--stop-after", "2"]) == 0
    assert "stopped at step 2" in capsys.readouterr().out
    assert main([*SMOKE, "--out", str(out)]) == 0
    assert "resuming from step 2" in capsys.readouterr().out
    a, b = load_file(str(out / P.WEIGHTS)), load_file(str(smoke_run / P.WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a different recipe is refused, in one line
    assert main([*SMOKE, "--out", str(out), "--qa-fraction", "0.9"]) == 2
    assert "qa_fraction" in capsys.readouterr().err


def test_the_shipped_weights_are_small_checked_and_pass_their_quality_bar(synthcoca):
    from vlmeft.backbone import synthcoca as pkg

    info = pkg.shipped_info()
    assert info["bytes"] <= 20 * 2**20 and synthcoca.weights_id.startswith("synthcoca:")
    assert len(synthcoca.output_ids) == info["stored_token_ids"]
    bar = info["eval"]  # `vlmeft backbone evaluate --model synthcoca-tiny --record`
    for task in ("world-vqa", "world-captions"):
        res = bar[task]
        adapted = res["vl-adapter_full_data"]
        assert res["trivial"] < res["zero_shot"] < adapted, (task, res)


def test_the_shipped_weights_can_say_every_answer_and_caption_of_their_tasks(synthcoca):
    """Every target of world-vqa and world-captions (shifted sets included) uses only tokens the
    shipped weights trained: otherwise `vlmeft run` refuses the task (a reference naming the
    held-out checkered background once did)."""
    from vlmeft import kinds
    from vlmeft.data.vl import get_vl_task

    for task_name, kind in (("world-vqa", "vqa"), ("world-captions", "captioning")):
        kinds.get(kind).check_task(get_vl_task(task_name), synthcoca)
    from dataclasses import replace

    from vlmeft.data.vl import VLExample

    task = get_vl_task("world-captions")  # cached: changed only in a copy
    named = VLExample("", ("a star on a checkered background",), "object", "x")
    bad = replace(task, test=replace(task.test, examples=[named, *task.test.examples[1:]]))
    with pytest.raises(VlmeftError, match="caption vocabulary mismatch.*'checkered'"):
        kinds.get("captioning").check_task(bad, synthcoca)


def _page_numbers(text: str) -> dict[str, list[float]]:
    """The quality-bar rows of site/captioner.md: task -> every number in its row."""
    import re

    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ("world-vqa", "world-captions") and len(cells) == 6:
            rows[cells[0]] = [float(x) for x in re.findall(r"\d+\.\d+", " ".join(cells[2:]))]
    return rows


def _recorded_numbers() -> dict[str, list[float]]:
    from vlmeft.backbone import synthcoca as pkg

    out = {}
    for task, r in pkg.shipped_info()["eval"].items():
        shifted = r["zero_shot_shifted"]
        out[task] = [round(100 * v, 1) for v in (r["trivial"], r["zero_shot"], shifted["checkered"], shifted["noisy"],
                                                 r["vl-adapter_full_data"], r["vl-adapter_full_data_std"])]
    return out


def test_the_site_page_states_the_recorded_quality_bar():
    """site/captioner.md's table is the one `vlmeft backbone evaluate --model synthcoca-tiny --record`
    stored beside the weights; an edited number is caught (second half)."""
    page = (Path(__file__).resolve().parents[1] / "site" / "captioner.md").read_text(encoding="utf-8")
    recorded = _recorded_numbers()
    assert _page_numbers(page) == recorded
    edited = page.replace(f"{recorded['world-vqa'][1]:.1f}", f"{recorded['world-vqa'][1] + 1:.1f}", 1)
    assert _page_numbers(edited) != recorded
