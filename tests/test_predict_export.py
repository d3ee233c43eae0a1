"""Use after training (issue 13, part 7): `vlmeft predict`, `vlmeft export`, and nothing
written is overwritten without --force."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vlmeft.cli import main

TINY = ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none", "--no-progress"]
SHORT = ["--set", "epochs=2", "--set", "min_steps=0"]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(capsys, argv, message: str) -> None:
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A 3-class image folder (task) and a folder of unlabelled images to predict."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220)}
    for name, colour in colours.items():
        (root / "task" / name).mkdir(parents=True)
        for i in range(6):
            arr = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / "task" / name / f"{i}.png")
    (root / "new").mkdir()
    for i, colour in enumerate(colours.values()):
        arr = np.clip(np.array(colour) + rng.normal(0, 30, (40, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "new" / f"{i}.png")
    (root / "new" / "README.txt").write_text("not an image, and not an image suffix: skipped by --folder")
    (root / "fake.png").write_text("not a png")
    return root


@pytest.fixture(scope="module")
def coop_ckpt(images, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt") / "coop"
    code = main(["run", "coop", "--task", f"imagefolder:{images / 'task'}", "--shots", "2", "--seed", "1",
                 "--save", str(ckpt), "--json", *TINY, *SHORT, "--set", "n_ctx=2"])
    assert code == 0
    return ckpt


# ------------------------------------------------------------------- run --save
def test_run_save_records_what_it_measured_and_never_overwrites(coop_ckpt, images, capsys):
    meta = json.loads((coop_ckpt / "config.json").read_text())
    assert meta["metrics"]["task"] == f"imagefolder:{images / 'task'}" and meta["metrics"]["shots"] == 2
    assert 0.0 <= meta["metrics"]["accuracy"] <= 1.0 and "zero_shot_accuracy" in meta["metrics"]
    before = (coop_ckpt / "adapter.safetensors").read_bytes()
    argv = ["run", "coop", "--task", f"imagefolder:{images / 'task'}", "--shots", "1", "--save", str(coop_ckpt),
            *TINY, *SHORT, "--set", "n_ctx=2"]
    _one_line(capsys, argv, f"{coop_ckpt}: already holds a checkpoint (config.json, adapter.safetensors); "
                            "pass --force to overwrite it")
    assert (coop_ckpt / "adapter.safetensors").read_bytes() == before


def test_run_save_force_overwrites(images, tmp_path, capsys):
    ckpt = tmp_path / "zs"
    argv = ["run", "zsclip", "--task", f"imagefolder:{images / 'task'}", "--shots", "1", "--save", str(ckpt), *TINY]
    assert _cli(capsys, *argv)[0] == 0
    assert _cli(capsys, *argv)[0] == 2
    assert _cli(capsys, *argv, "--force")[0] == 0


# ---------------------------------------------------------------------- predict
def test_predict_images_and_folder(coop_ckpt, images, capsys):
    new = sorted((images / "new").glob("*.png"))
    code, out, err = _cli(capsys, "predict", "coop", "--checkpoint", str(coop_ckpt), *map(str, new),
                          "--top-k", "2", "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert [p["image"] for p in result["predictions"]] == [str(p) for p in new]
    for p in result["predictions"]:
        assert len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"]
        assert {t["class"] for t in p["top"]} <= {"red", "green", "blue"}
    assert out.splitlines()[0].startswith(f"{new[0]}: ")
    code, out2, err = _cli(capsys, "predict", "coop", "--checkpoint", str(coop_ckpt), "--folder", str(images / "new"),
                           "--top-k", "2", "--json")
    assert code == 0 and json.loads(out2.strip().splitlines()[-1])["predictions"] == result["predictions"]
    # --top-k beyond the classes shows them all; probabilities of one image sum to 1
    code, out3, _ = _cli(capsys, "predict", "coop", "--checkpoint", str(coop_ckpt), str(new[0]), "--top-k", "9",
                         "--json")
    top = json.loads(out3.strip().splitlines()[-1])["predictions"][0]["top"]
    assert len(top) == 3 and abs(sum(t["probability"] for t in top) - 1) < 1e-5


def test_predict_matches_the_engine(coop_ckpt, images, capsys):
    """The predicted top class is the argmax of the method's own logits."""
    from vlmeft.backbone import load_backbone
    from vlmeft.data.loading import Preprocess, load_batch
    from vlmeft.data.types import Split
    from vlmeft.engine import checkpoint

    new = sorted((images / "new").glob("*.png"))
    method = checkpoint.load(coop_ckpt, load_backbone("vlmeft-tiny-vit", None))
    batch = load_batch(Split(new, np.zeros(len(new), dtype=np.int64), "x"), range(len(new)),
                       Preprocess.for_backbone(method.backbone))
    with torch.no_grad():
        want = [method.classnames[i] for i in method(batch).argmax(1).tolist()]
    code, out, _ = _cli(capsys, "predict", "coop", "--checkpoint", str(coop_ckpt), *map(str, new), "--json")
    got = [p["top"][0]["class"] for p in json.loads(out.strip().splitlines()[-1])["predictions"]]
    assert got == want


@pytest.mark.parametrize("extra,message", [
    (["{fake}"], "{fake}: not an image (PIL cannot read it)"),
    (["{missing}"], "{missing}: image file does not exist"),
    ([], "give image files or --folder DIR"),
    (["--folder", "{empty}"], "no images here"),
    (["{ok}", "--top-k", "0"], "--top-k: must be positive"),
])
def test_predict_bad_input(coop_ckpt, images, tmp_path, capsys, extra, message):
    (tmp_path / "empty").mkdir()
    subst = {"fake": images / "fake.png", "missing": tmp_path / "nope.png", "empty": tmp_path / "empty",
             "ok": sorted((images / "new").glob("*.png"))[0]}
    fmt = [a.format(**subst) for a in extra]
    _one_line(capsys, ["predict", "coop", "--checkpoint", str(coop_ckpt), *fmt], message.format(**subst))


def test_predict_with_another_methods_checkpoint(coop_ckpt, images, capsys):
    _one_line(capsys, ["predict", "vpt", "--checkpoint", str(coop_ckpt), str(images / "new" / "0.png")],
              "this checkpoint is for method 'coop', not 'vpt'")


# ----------------------------------------------------------------------- export
def test_export_tensors_and_card(coop_ckpt, tmp_path, capsys):
    from vlmeft.kb import cite
    from vlmeft.kb.load import load_kb

    out = tmp_path / "export"
    code, stdout, err = _cli(capsys, "export", "coop", "--checkpoint", str(coop_ckpt), "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["adapter.safetensors", "card.json", "card.md"]
    meta = json.loads((coop_ckpt / "config.json").read_text())
    exported, saved = load_file(str(out / "adapter.safetensors")), load_file(str(coop_ckpt / "adapter.safetensors"))
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    card = json.loads((out / "card.json").read_text())
    record = load_kb().methods["coop"]
    assert card["method"] == "coop" and card["citation"] == cite.text(record) and "@" in card["bibtex"]
    assert card["classnames"] == meta["classnames"] == ["blue", "green", "red"]
    assert card["backbone"]["name"] == "vlmeft-tiny-vit" and card["backbone"]["weights_id"] == "random:0"
    assert card["metrics"] == meta["metrics"] and "recipe" in card
    import hashlib

    assert card["files"]["adapter.safetensors"] == hashlib.sha256((out / "adapter.safetensors").read_bytes()).hexdigest()
    md = (out / "card.md").read_text()
    assert md.startswith("# coop: Learning to Prompt") and cite.text(record) in md and "blue, green, red" in md
    assert f"{100 * meta['metrics']['accuracy']:.2f}%" in md
    # Nothing is overwritten without --force; a checkpoint of another method is refused.
    before = (out / "card.json").read_bytes()
    _one_line(capsys, ["export", "coop", "--checkpoint", str(coop_ckpt), "--out", str(out)],
              f"{out}: already holds adapter.safetensors, card.json, card.md; pass --force to overwrite")
    assert (out / "card.json").read_bytes() == before
    assert _cli(capsys, "export", "coop", "--checkpoint", str(coop_ckpt), "--out", str(out), "--force")[0] == 0
    _one_line(capsys, ["export", "clip-lora", "--checkpoint", str(coop_ckpt), "--out", str(tmp_path / "other")],
              "this checkpoint is for method 'coop', not 'clip-lora'")
    assert not (tmp_path / "other").exists()


def test_export_lora_merges_into_weights_plain_open_clip_loads(images, tmp_path, capsys):
    ckpt, out = tmp_path / "lora", tmp_path / "merged"
    code, stdout, err = _cli(capsys, "run", "clip-lora", "--task", f"imagefolder:{images / 'task'}", "--shots", "2",
                             "--save", str(ckpt), *TINY, *SHORT, "--set", "lr=0.05")
    assert code == 0, err
    assert _cli(capsys, "export", "clip-lora", "--checkpoint", str(ckpt), "--out", str(out))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md", "open_clip_config.json",
                                                     "open_clip_model.safetensors"]
    # The adapted model, as vlmeft runs it
    from vlmeft.backbone import load_backbone
    from vlmeft.engine import checkpoint

    method = checkpoint.load(ckpt, load_backbone("vlmeft-tiny-vit", None)).eval()
    assert all(float(method.lora_B[tower].detach().abs().max()) > 0 for tower in ("vision", "text"))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapted = method(x)
    # Plain open_clip, merged weights, prompts from the card
    card = json.loads((out / "card.json").read_text())
    model = open_clip.create_model(f"local-dir:{out}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    prompts = [card["templates"][0].format(c) for c in card["classnames"]]
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
        plain = model.logit_scale.exp() * img @ txt.t()
        frozen = method.backbone.logit_scale() * method.backbone.encode_image(x, normalize=True) @ \
            method.backbone.encode_text(method.backbone.tokenize(prompts), normalize=True).t()
    torch.testing.assert_close(plain, adapted, atol=1e-4, rtol=0)
    assert (frozen - adapted).abs().max() > 1e-3  # LoRA changed the logits: the merge carries the update
    # vlmeft loads the export as a backbone too
    merged = load_backbone(pretrained=str(out))
    assert merged.name == f"local-dir:{out.resolve()}"
    with torch.no_grad():
        torch.testing.assert_close(merged.encode_image(x, normalize=True), img, atol=1e-5, rtol=0)
