"""synthclip-tiny pretraining (smoke + exact resume), the compact weight format, checksum
verification, plain-open_clip loading, and the quality bar of the shipped weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vlmeft.backbone.synthclip import compact
from vlmeft.backbone.synthclip.pretrain import (CHECKPOINT, WEIGHTS, Recipe, batch_at, clip_loss, lr_at, normalise,
                                                 prepare_data, pretrain, tokenize, vocabulary)
from vlmeft.cli import main
from vlmeft.errors import VlmeftError

SMOKE = dict(steps=5, batch_size=16, pool_size=300, warmup=2, checkpoint_every=2, threads=1)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """An uninterrupted 5-step run, exported."""
    out = tmp_path_factory.mktemp("pretrain") / "full"
    result = pretrain(Recipe(**SMOKE), out, progress=False, log=lambda m: None)
    assert result["exported"] and result["step"] == 5
    return out


def test_smoke_run_writes_weights_recipe_and_checkpoint(smoke_run):
    info = json.loads((smoke_run / "weights.json").read_text())
    assert info["sha256"] == compact.sha256_file(smoke_run / WEIGHTS)
    assert info["recipe"]["steps"] == 5 and info["recipe"]["seed"] == 0
    assert json.loads((smoke_run / "recipe.json").read_text())["batch_size"] == 16
    ck = torch.load(smoke_run / CHECKPOINT, map_location="cpu", weights_only=True)
    assert ck["step"] == 5 and "optimizer" in ck and "torch_rng" in ck
    assert np.isfinite(info["train"]["final_loss"])


def test_interrupted_run_resumes_to_the_same_weights(smoke_run, tmp_path, capsys):
    out = tmp_path / "resumed"
    args = ["backbone", "pretrain", "--steps", "5", "--batch-size", "16", "--pool-size", "300", "--warmup", "2",
            "--checkpoint-every", "2", "--threads", "1", "--out", str(out), "--no-progress"]
    assert main(args + ["--stop-after", "3"]) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    ck = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
    assert ck["step"] == 3 and not (out / WEIGHTS).exists()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "resuming from step 3" in printed and "wrote" in printed
    assert torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)["step"] == 5
    a, b = load_file(str(out / WEIGHTS)), load_file(str(smoke_run / WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # --no-resume starts over: after 2 steps the weights differ from the 3-step checkpoint
    assert main(args + ["--no-resume", "--stop-after", "2"]) == 0
    assert torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)["step"] == 2


def test_resume_refuses_a_different_recipe(smoke_run, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(smoke_run, out)
    code = main(["backbone", "pretrain", "--steps", "6", "--batch-size", "8", "--pool-size", "300",
                 "--out", str(out), "--no-progress"])
    assert code == 2
    assert "batch_size" in capsys.readouterr().err


def _eager_batches(recipe: Recipe, steps: int):
    """The batches as pretraining drew them before rendering became lazy (the derivation the
    shipped weights were trained with, kept verbatim): every image rendered first, the
    vocabulary read off every caption, caption ids global over the pool."""
    from vlmeft.backbone.synthclip.paths import model_config
    from vlmeft.world.pool import build_pool

    pool = build_pool(recipe.pool_size, recipe.seed)
    flat = [c for cs in pool.captions for c in cs]
    uniq, inverse = np.unique(np.array(flat), return_inverse=True)
    tok = tokenize(uniq.tolist())
    used = torch.unique(tok)
    lookup = torch.full((int(model_config()["text_cfg"]["vocab_size"]),), -1, dtype=torch.int64)
    lookup[used] = torch.arange(len(used))
    k = len(pool.captions[0])
    inv = torch.from_numpy(inverse.reshape(-1, k).astype(np.int64))
    images, tokens = torch.from_numpy(pool.images), lookup[tok][inv]
    batches = []
    for step in range(steps):
        g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        idx = torch.randint(len(images), (recipe.batch_size,), generator=g)
        which = torch.randint(k, (recipe.batch_size,), generator=g)
        batches.append((normalise(images[idx]), tokens[idx, which], inv[idx, which]))
    return used, batches


def test_lazy_batches_are_bit_identical_to_the_eager_pools():
    recipe = Recipe(batch_size=32, pool_size=1000, seed=0)
    data = prepare_data(recipe, progress=False)
    assert data.pool.rendered == 0  # nothing is rendered before the first step
    used, eager = _eager_batches(recipe, steps=4)
    assert torch.equal(data.used_ids, used)
    for step, (x, tok, cid) in enumerate(eager):
        lx, ltok, lcid = batch_at(step, data, recipe)
        assert torch.equal(lx, x) and torch.equal(ltok, tok), step
        # caption ids are numbered per batch now; the loss reads only which captions are equal
        assert torch.equal(lcid[:, None] == lcid[None, :], cid[:, None] == cid[None, :]), step
        assert torch.equal(clip_loss(lx[:, 0, 0, :4], lx[:, 1, 0, :4], torch.tensor(3.0), lcid),
                           clip_loss(x[:, 0, 0, :4], x[:, 1, 0, :4], torch.tensor(3.0), cid))
    assert data.pool.rendered <= 4 * 32 < recipe.pool_size  # only what the four batches drew


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["backbone", "pretrain", "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "--steps" in capsys.readouterr().err


def test_loss_and_schedule():
    img = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    ids = torch.tensor([0, 1, 2, 3])
    perfect = clip_loss(img, img, torch.tensor(100.0), ids)
    assert perfect < 0.01
    # identical captions are both positives: swapping them costs nothing
    dup = torch.tensor([0, 0, 2, 3])
    same = clip_loss(img, img[[1, 0, 2, 3]], torch.tensor(1.0), dup)
    assert torch.isclose(same, clip_loss(img, img, torch.tensor(1.0), dup))
    r = Recipe(steps=100, warmup=10, lr=1.0)
    assert lr_at(0, r) == pytest.approx(0.1) and lr_at(9, r) == pytest.approx(1.0)
    assert lr_at(99, r) < 0.01


def test_compact_round_trip_and_tamper_detection(smoke_run, tmp_path):
    from vlmeft.backbone.synthclip import state_dict

    full = state_dict(smoke_run)
    tok = full["token_embedding.weight"]
    assert tok.shape[0] == 49408 and tok.dtype == torch.float32
    ids = load_file(str(smoke_run / WEIGHTS))["token_embedding.ids"]
    unused = torch.ones(49408, dtype=torch.bool)
    unused[ids] = False
    assert torch.count_nonzero(tok[unused]) == 0 and torch.count_nonzero(tok[ids]) > 0
    packed = compact.pack(full, ids)
    again = compact.unpack(packed, 49408)
    for k in full:
        torch.testing.assert_close(again[k], full[k], rtol=0, atol=0)
    # a single flipped byte is caught by the checksum
    bad = tmp_path / "bad"
    shutil.copytree(smoke_run, bad)
    data = bytearray((bad / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(VlmeftError, match="sha256 mismatch"):
        state_dict(bad)
    (bad / "weights.json").write_text("{not json")
    with pytest.raises(VlmeftError, match="weights.json"):
        state_dict(bad)


def test_plain_open_clip_loads_the_materialised_checkpoint(smoke_run, tmp_path, monkeypatch):
    import open_clip

    from vlmeft.backbone.synthclip import checkpoint_path, config_dir, state_dict

    monkeypatch.setenv("VLMEFT_CACHE", str(tmp_path))
    path = checkpoint_path(smoke_run)
    assert path.is_file() and str(path).startswith(str(tmp_path))
    assert checkpoint_path(smoke_run) == path  # reused, not rewritten
    open_clip.add_model_config(config_dir())
    model, _, preprocess = open_clip.create_model_and_transforms("synthclip-tiny", pretrained=str(path))
    expected = state_dict(smoke_run)
    got = model.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)
    assert model.visual.image_size in (32, (32, 32))


# ---------------------------------------------------------------- the shipped weights
def _shipped():
    from vlmeft.backbone.synthclip import shipped_info

    try:
        return shipped_info()
    except VlmeftError:
        pytest.skip("synthclip-tiny weights are not shipped in this checkout")


def test_shipped_weights_are_small_verified_and_cover_the_task_vocabulary():
    from vlmeft.backbone.synthclip import config_dir
    from vlmeft.backbone.synthclip.pretrain import tokenize
    from vlmeft.data.tasks import get_task, task_kind, task_names

    info = _shipped()
    path = config_dir() / info["file"]
    assert path.stat().st_size <= 20 * 2**20
    assert compact.sha256_file(path) == info["sha256"]
    assert info["recipe"]["steps"] >= 500
    ids = set(load_file(str(path))["token_embedding.ids"].tolist())
    texts = []
    for name in task_names():
        if task_kind(name) in ("vqa", "captions"):
            continue  # the captioner's tasks: synthcoca-tiny's vocabulary (tests/test_synthcoca.py)
        t = get_task(name)
        if hasattr(t, "classnames"):
            texts += [tpl.format(c) for c in t.classnames for tpl in t.templates]
        else:
            texts += t.captions + [g.expression for g in t.grounding]
    missing = set(tokenize(texts).unique().tolist()) - ids
    assert not missing, f"task tokens never trained: {sorted(missing)}"


def test_world_vocabulary_is_the_shipped_weights_vocabulary():
    """The shipped weights were trained with the vocabulary read off all 120,000 rendered
    captions and store it; the closed word list gives the same ids, so the default recipe
    still builds the same model (the same compact table, the same initialisation)."""
    from vlmeft.backbone.synthclip import config_dir

    info = _shipped()
    stored = load_file(str(config_dir() / info["file"]))["token_embedding.ids"]
    assert torch.equal(vocabulary(), stored.sort().values)


def test_shipped_backbone_quality_bar():
    """Zero-shot on real UCI digits: clearly above chance, clearly below a 16-shot probe."""
    from vlmeft.backbone.synthclip.evaluate import evaluate_classification, load
    from vlmeft.data.tasks import get_task

    _shipped()
    res = evaluate_classification(load(), get_task("digits"))
    assert res["zero_shot"] >= 30.0, res
    assert res["linear_probe_16shot"] >= res["zero_shot"] + 10.0, res


def test_info_install_and_evaluate_arguments(smoke_run, tmp_path, capsys):
    from vlmeft.backbone.synthclip.weights import install, sha256

    assert main(["backbone", "info", "--weights", str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert sha256(smoke_run) in out and "params: " in out
    dest = install(smoke_run, tmp_path)
    assert compact.sha256_file(dest) == sha256(smoke_run) == sha256(tmp_path)
    assert main(["backbone", "evaluate", "--tasks", "digits,nope", "--weights", str(smoke_run)]) == 2
    assert "unknown task(s) nope" in capsys.readouterr().err
    assert main(["backbone", "info", "--weights", str(tmp_path / "missing")]) == 2
