"""Weights that cannot be wrong silently (issue 13, part 4): vlmeft.backbone.weights.

Every source is exercised with small random models written here: OpenAI's key layout, a
local Hugging Face cache (hub offline), a `transformers` CLIPModel folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from vlmeft.backbone import load_backbone
from vlmeft.backbone import weights as resolver
from vlmeft.cli import main
from vlmeft.errors import VlmeftError

TINY = "vlmeft-tiny-vit"


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _features(model, images, tokens):
    """Image and text features of an open_clip model or a Backbone (same method names)."""
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def _open_clip(name: str, state: dict, quick_gelu: bool) -> torch.nn.Module:
    model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu).eval()
    model.load_state_dict(state)
    return model


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(3)
    resolver._register()
    return {k: v.clone() for k, v in open_clip.create_model(TINY, pretrained=None).state_dict().items()}


def openai_layout(state: dict) -> dict:
    """A CLIP state dict as OpenAI's release stores it: open_clip's CLIP keys are OpenAI's
    own names (``visual.conv1.weight``, ``transformer.resblocks.0.attn.in_proj_weight``,
    ``token_embedding.weight``, ...), plus the three integers of the original model
    object, which open_clip's checkpoints do not have."""
    out = {k: v for k, v in state.items()}
    for key in ("visual.conv1.weight", "visual.class_embedding", "visual.proj", "token_embedding.weight",
                "positional_embedding", "text_projection", "logit_scale", "ln_final.weight",
                "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.mlp.c_fc.weight"):
        assert key in out, key  # the layout this test claims to write
    out["input_resolution"] = torch.tensor(state["visual.conv1.weight"].shape[-1] * 4)  # 32 px images
    out["context_length"] = torch.tensor(state["positional_embedding"].shape[0])
    out["vocab_size"] = torch.tensor(state["token_embedding.weight"].shape[0])
    return out


def _one_line(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    return err


# -------------------------------------------------------------------- defaults
def test_missing_weights_on_a_real_backbone_say_how_to_pass_them(capsys):
    with pytest.raises(VlmeftError) as info:
        load_backbone("ViT-B-16")
    text = str(info.value)
    assert text.startswith("--pretrained: backbone 'ViT-B-16' has no default weights")
    for how in ("--pretrained TAG", "openai", "a weights file", "hf-hub:ORG/NAME", "transformers", "none"):
        assert how in text
    _one_line(capsys, ["run", "coop", "--backbone", "ViT-B-16", "--task", "digits", "--shots", "1"],
              "backbone 'ViT-B-16' has no default weights")


def test_random_weights_warn_in_the_output_and_the_json(capsys):
    bb = load_backbone("synthclip-tiny", "none")
    assert bb.weights_id == "random:0" and len(bb.warnings) == 1 and "random weights" in bb.warnings[0]
    assert load_backbone(TINY, "none").warnings == []  # random by design: nothing to warn about
    code = main(["run", "zsclip", "--task", "digits", "--shots", "1", "--pretrained", "none", "--json",
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.startswith("warning: 'synthclip-tiny' has random weights (--pretrained none)")
    assert json.loads(out.strip().splitlines()[-1])["warnings"] == [err.strip()]


def test_shipped_and_unknown_tags():
    assert load_backbone("synthclip-tiny").pretrained == "synthclip"
    with pytest.raises(VlmeftError, match="'openia' is neither a weights file nor an open_clip tag of 'synthclip-tiny'"):
        load_backbone("synthclip-tiny", "openia")
    with pytest.raises(VlmeftError, match="only for synthclip-tiny"):
        load_backbone(TINY, "synthclip")


# -------------------------------------------------------------------- QuickGELU
def test_openai_format_is_built_with_quickgelu(tiny_state, tmp_path):
    path = tmp_path / "openai-layout.pt"
    torch.save(openai_layout(tiny_state), path)
    bb = load_backbone(TINY, str(path))
    assert bb.name == f"{TINY}-quickgelu" and bb.pretrained == str(path)
    assert bb.notes and "OpenAI's format" in bb.notes[0] and f"'{TINY}-quickgelu'" in bb.notes[0]
    images, tokens = _images(), bb.tokenize(["a photo of a cat", "a dog"])
    got = _features(bb, images, tokens)
    want = _features(_open_clip(TINY, tiny_state, quick_gelu=True), images, tokens)
    gelu = _features(_open_clip(TINY, tiny_state, quick_gelu=False), images, tokens)
    for g, w, x in zip(got, want, gelu):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)  # the wrapper re-runs open_clip's blocks
        assert (g - x).abs().max() > 1e-3  # GELU would have been silently different
    # The recorded name and spec resolve to the same model again (eval / predict reload this way).
    again = load_backbone(bb.name, bb.pretrained)
    assert again.name == bb.name and again.notes == []
    torch.testing.assert_close(_features(again, images, tokens)[0], got[0], atol=0, rtol=0)
    # safetensors in the same layout
    save_file({k: v.contiguous() for k, v in openai_layout(tiny_state).items()}, str(tmp_path / "w.safetensors"))
    assert load_backbone(TINY, str(tmp_path / "w.safetensors")).name == f"{TINY}-quickgelu"


def test_openai_release_shapes_under_a_gelu_name_are_refused(tiny_state, tmp_path, capsys, monkeypatch):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(path))
    assert load_backbone(TINY, str(path)).name == TINY  # no OpenAI release of this architecture: GELU as named
    monkeypatch.setattr(resolver, "openai_released", lambda name: name.removesuffix("-quickgelu") == TINY)
    err = _one_line(capsys, ["run", "zsclip", "--task", "digits", "--backbone", TINY, "--pretrained", str(path)],
                    f"these weights have the tensor shapes of OpenAI's {TINY} release")
    assert f"--backbone {TINY}-quickgelu" in err and f"--pretrained gelu:{path}" in err
    # Either way out is explicit and builds what it says.
    images, tokens = _images(), open_clip.get_tokenizer(TINY)(["a cat"])
    quick = load_backbone(f"{TINY}-quickgelu", str(path))
    gelu = load_backbone(TINY, f"gelu:{path}")
    assert quick.name == f"{TINY}-quickgelu" and gelu.name == TINY and gelu.pretrained == f"gelu:{path}"
    torch.testing.assert_close(_features(quick, images, tokens)[0],
                               _features(_open_clip(TINY, tiny_state, True), images, tokens)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(_features(gelu, images, tokens)[0],
                               _features(_open_clip(TINY, tiny_state, False), images, tokens)[0], atol=1e-5, rtol=0)


def test_vit_b16_shapes_under_gelu_are_refused_without_building_it():
    """The real case, on meta tensors (no memory): ViT-B-16 has an OpenAI release."""
    assert resolver.openai_released("ViT-B-16") and not resolver.openai_released("synthclip-tiny")
    assert resolver.uses_quick_gelu("ViT-B-16-quickgelu") and not resolver.uses_quick_gelu("ViT-B-16")
    with torch.device("meta"):
        state = open_clip.create_model("ViT-B-16", pretrained=None, device="meta").state_dict()
    with pytest.raises(VlmeftError, match="tensor shapes of OpenAI's ViT-B-16 release.*ViT-B-16-quickgelu"):
        resolver._load_named("ViT-B-16", state, declared=None, why="", spec="w.pt", where="w.pt")


# ------------------------------------------------------------------- bad files
def test_shapes_that_do_not_fit_name_the_first_tensor(tiny_state, tmp_path, capsys):
    state = dict(tiny_state)
    state["visual.proj"] = torch.zeros(96, 7)
    path = tmp_path / "bad-shape.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    _one_line(capsys, ["run", "zsclip", "--task", "digits", "--backbone", TINY, "--pretrained", str(path)],
              f"{path}: tensor 'visual.proj' has shape [96, 7] in the weights, but '{TINY}' expects [96, 48]")
    rn = tmp_path / "rn.safetensors"  # another architecture altogether
    resolver._register()
    save_file({k: v.contiguous() for k, v in open_clip.create_model("vlmeft-tiny-rn").state_dict().items()}, str(rn))
    with pytest.raises(VlmeftError, match=f"is missing from the weights|has shape .* but '{TINY}' expects"):
        load_backbone(TINY, str(rn))
    extra = dict(tiny_state, **{"visual.extra": torch.zeros(1)})
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(VlmeftError, match="unexpected tensor 'visual.extra'"):
        load_backbone(TINY, str(tmp_path / "extra.safetensors"))


def test_torchscript_archives_and_non_state_files_are_refused(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "ViT-B-16.pt"
    scripted.save(str(path))
    with pytest.raises(VlmeftError, match="TorchScript archive"):
        load_backbone(TINY, str(path))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(VlmeftError, match="no state dict of tensors"):
        load_backbone(TINY, str(tmp_path / "list.pt"))


# --------------------------------------------------------------- local HF hub
HUB_SCRIPT = textwrap.dedent("""
    import json, sys, torch, open_clip
    from vlmeft.backbone import load_backbone
    from vlmeft.errors import VlmeftError
    cfg = json.loads(sys.argv[1])
    src = open_clip.model.CLIP(**cfg).eval()
    src.load_state_dict(open_clip.factory.load_state_dict(sys.argv[2]))
    bb = load_backbone(pretrained="hf-hub:vlmeft-test/tiny-clip")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tok = bb.tokenize(["a photo of a cat", "a dog"])
    with torch.no_grad():
        di = (bb.encode_image(x) - src.encode_image(x)).abs().max().item()
        dt = (bb.encode_text(tok) - src.encode_text(tok)).abs().max().item()
    try:
        load_backbone(pretrained="hf-hub:vlmeft-test/not-cached")
        missing = ""
    except VlmeftError as err:
        missing = str(err)
    print(json.dumps({"name": bb.name, "pretrained": bb.pretrained, "weights_id": bb.weights_id,
                      "image": di, "text": dt, "missing": missing}))
""")


def test_hf_hub_from_the_local_cache_with_the_hub_offline(tmp_path):
    cfg = {"embed_dim": 32, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    torch.manual_seed(5)
    model = open_clip.model.CLIP(**cfg)
    snapshot = tmp_path / "hub" / "models--vlmeft-test--tiny-clip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    (snapshot / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    weights = snapshot / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = subprocess.run([sys.executable, "-c", HUB_SCRIPT, json.dumps(cfg), str(weights)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["name"] == got["pretrained"] == "hf-hub:vlmeft-test/tiny-clip"
    assert got["weights_id"].startswith("hf-hub:") and got["image"] <= 1e-5 and got["text"] <= 1e-5
    assert got["missing"].startswith("--pretrained: 'vlmeft-test/not-cached' is not in the local Hugging Face cache")


# ------------------------------------------------------------- transformers
@pytest.fixture(scope="module", params=["quick_gelu", "gelu"])
def hf_clip(request, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    act = request.param
    config = transformers.CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": act},
        vision_config={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8, "hidden_act": act},
        projection_dim=24)
    torch.manual_seed(7)
    model = transformers.CLIPModel(config).eval()
    folder = tmp_path_factory.mktemp(f"hf-{act}")
    model.save_pretrained(folder)
    return model, folder, act


def _pooled(out):
    return out if torch.is_tensor(out) else out.pooler_output


def test_transformers_clip_folder_equals_the_source_model(hf_clip):
    model, folder, act = hf_clip
    bb = load_backbone(pretrained=str(folder))
    assert bb.name == f"transformers:{folder}" and bb.weights_id.startswith("transformers:")
    assert bb.model_cfg["quick_gelu"] == (act == "quick_gelu")
    images = _images()
    tokens = bb.tokenize(["a photo of a cat.", "two dogs on a sofa", "x"])
    with torch.no_grad():
        want_img = _pooled(model.get_image_features(pixel_values=images))
        want_txt = _pooled(model.get_text_features(input_ids=tokens))
        got_img, got_txt = bb.encode_image(images), bb.encode_text(tokens)
    torch.testing.assert_close(got_img, want_img, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_txt, want_txt, atol=1e-5, rtol=0)
    torch.testing.assert_close(bb.logit_scale(), model.logit_scale.exp().detach(), atol=1e-6, rtol=0)
    again = load_backbone(bb.name, bb.pretrained)  # how a checkpoint's record reloads it
    assert again.weights_id == bb.weights_id


def test_transformers_folder_under_a_name_that_does_not_fit(hf_clip):
    _, folder, _ = hf_clip
    with pytest.raises(VlmeftError, match=f"{folder}: tensor '.*' has shape .* but '{TINY}"):
        load_backbone(TINY, str(folder))


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(VlmeftError, match="must hold a transformers CLIPModel"):
        load_backbone(pretrained=str(tmp_path))
