"""The backbone wrapper equals open_clip without hooks, and its hooks do what they say."""

from __future__ import annotations

import open_clip
import pytest
import torch

from vlmeft.backbone import Backbone, load_backbone
from vlmeft.errors import VlmeftError

PROMPTS = ["a photo of a red circle.", "the digit 7.", "a blue star on a checkered background"]


def _images(backbone: Backbone, n: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=gen)


def assert_matches_open_clip(backbone: Backbone) -> None:
    tokens = backbone.tokenize(PROMPTS)
    images = _images(backbone)
    with torch.no_grad():
        ours_t = backbone.encode_text(tokens)
        ref_t = backbone.model.encode_text(tokens)
        ours_i = backbone.encode_image(images)
        ref_i = backbone.model.encode_image(images)
    assert ours_t.shape == ref_t.shape == (len(PROMPTS), backbone.embed_dim)
    assert ours_i.shape == ref_i.shape == (2, backbone.embed_dim)
    torch.testing.assert_close(ours_t, ref_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_i, ref_i, atol=1e-5, rtol=0)
    # The features are not trivially equal (e.g. all zeros): different inputs differ.
    assert not torch.allclose(ours_t[0], ours_t[1])


def test_tiny_vit_matches_open_clip(tiny_vit):
    assert_matches_open_clip(tiny_vit)


def test_tiny_rn_matches_open_clip(tiny_rn):
    assert not tiny_rn.is_vit
    assert_matches_open_clip(tiny_rn)


def test_synthclip_matches_open_clip(synthclip):
    assert_matches_open_clip(synthclip)


def test_vit_b16_matches_open_clip(vit_b16):
    assert (vit_b16.embed_dim, vit_b16.text_width, vit_b16.vision_width) == (512, 512, 768)
    assert (vit_b16.text_layers, vit_b16.vision_layers, vit_b16.patch_size, vit_b16.num_patches) == (12, 12, 16, 196)
    assert_matches_open_clip(vit_b16)


def test_custom_text_clip_matches_open_clip(tiny_vit):
    from vlmeft.backbone.factory import register_configs

    register_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("vlmeft-tiny-vit", pretrained=None, force_custom_text=True)
    assert isinstance(model, open_clip.CustomTextCLIP)
    backbone = Backbone(model, open_clip.get_tokenizer("vlmeft-tiny-vit"), name="vlmeft-tiny-vit",
                        pretrained=None, weights_id="random:custom")
    assert backbone.text_tower is model.text
    assert_matches_open_clip(backbone)


def test_attributes_are_inferred(tiny_vit):
    assert tiny_vit.embed_dim == 48 and tiny_vit.text_width == 64 and tiny_vit.vision_width == 96
    assert tiny_vit.text_layers == 3 and tiny_vit.vision_layers == 3
    assert tiny_vit.image_size == 32 and tiny_vit.patch_size == 8 and tiny_vit.num_patches == 16
    assert tiny_vit.context_length == 24


def test_layer_hooks_see_batch_first_tensors(tiny_vit):
    seen_text: list[tuple[int, tuple[int, ...]]] = []
    seen_image: list[tuple[int, tuple[int, ...]]] = []

    def text_hook(i, x):
        seen_text.append((i, tuple(x.shape)))
        return x

    def image_hook(i, x):
        seen_image.append((i, tuple(x.shape)))
        return x

    tokens = tiny_vit.tokenize(PROMPTS)  # N = 3, L = 24: a sequence-first layout would show [24, 3, D]
    with torch.no_grad():
        hooked = tiny_vit.encode_text(tokens, layer_hook=text_hook)
        plain = tiny_vit.encode_text(tokens)
        hooked_i = tiny_vit.encode_image(_images(tiny_vit, n=5), layer_hook=image_hook)
        plain_i = tiny_vit.encode_image(_images(tiny_vit, n=5))
    assert seen_text == [(i, (3, 24, 64)) for i in range(tiny_vit.text_layers + 1)]
    assert seen_image == [(i, (5, 17, 96)) for i in range(tiny_vit.vision_layers + 1)]
    torch.testing.assert_close(hooked, plain, atol=0, rtol=0)  # identity hooks change nothing
    torch.testing.assert_close(hooked_i, plain_i, atol=0, rtol=0)


def test_text_embeddings_replace_token_embeddings(tiny_vit):
    tokens = tiny_vit.tokenize(PROMPTS)
    emb = tiny_vit.token_embedding(tokens)
    with torch.no_grad():
        same = tiny_vit.encode_text(tokens, embeddings=emb)
        emb2 = emb.clone()
        emb2[:, 1:3] += 0.5 * torch.randn(emb2[:, 1:3].shape, generator=torch.Generator().manual_seed(0))  # CoOp-style edit
        changed = tiny_vit.encode_text(tokens, embeddings=emb2)
    torch.testing.assert_close(same, tiny_vit.encode_text(tokens), atol=1e-6, rtol=0)
    assert (changed - same).abs().max() > 1e-3


def test_prompt_tokens_change_features_and_are_dropped_before_pooling(tiny_vit):
    images = _images(tiny_vit, n=2)
    prompts = torch.randn(1, 3, tiny_vit.vision_width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain, plain_tokens = tiny_vit.encode_image(images, return_tokens=True)
        assert tiny_vit.last_vision_seq_len == 1 + tiny_vit.num_patches
        prompted, prompted_tokens = tiny_vit.encode_image(images, prompt_tokens=prompts, return_tokens=True)
        assert tiny_vit.last_vision_seq_len == 1 + tiny_vit.num_patches + 3
    assert prompted.shape == plain.shape == (2, tiny_vit.embed_dim)
    # Patch tokens come back without the prompts: prompts were sliced off before pooling.
    assert prompted_tokens.shape == plain_tokens.shape == (2, tiny_vit.num_patches, tiny_vit.embed_dim)
    assert (prompted - plain).abs().max() > 1e-4  # prompts attend, so features change


def test_hook_appended_tokens_are_dropped(tiny_vit):
    images = _images(tiny_vit, n=2)
    extra = torch.randn(1, 2, tiny_vit.vision_width)

    def deep(i, x):  # VPT-deep style: add two tokens before block 0, keep them after
        return torch.cat([x, extra.expand(x.shape[0], -1, -1)], dim=1) if i == 0 else x

    with torch.no_grad():
        out, tokens = tiny_vit.encode_image(images, layer_hook=deep, return_tokens=True)
    assert tiny_vit.last_vision_seq_len == 1 + tiny_vit.num_patches + 2
    assert tokens.shape[1] == tiny_vit.num_patches and out.shape == (2, tiny_vit.embed_dim)


def test_no_attention_mask_is_open_clips_output_exactly(tiny_vit):
    """The optional extra mask changes nothing when absent, and an all-zero mask is no mask."""
    tokens, images = tiny_vit.tokenize(PROMPTS), _images(tiny_vit, n=2)
    n_img = 1 + tiny_vit.num_patches
    with torch.no_grad():
        ref_t, ref_i = tiny_vit.model.encode_text(tokens), tiny_vit.model.encode_image(images)
        torch.testing.assert_close(tiny_vit.encode_text(tokens, attn_mask=None), ref_t, atol=1e-6, rtol=0)
        torch.testing.assert_close(tiny_vit.encode_image(images, attn_mask=None), ref_i, atol=1e-6, rtol=0)
        zeros_t = torch.zeros(tokens.shape[1], tokens.shape[1])
        torch.testing.assert_close(tiny_vit.encode_text(tokens, attn_mask=zeros_t), ref_t, atol=1e-6, rtol=0)
        torch.testing.assert_close(tiny_vit.encode_image(images, attn_mask=torch.zeros(n_img, n_img)), ref_i,
                                   atol=1e-6, rtol=0)


def test_read_only_prompts_leave_the_original_tokens_unchanged(tiny_vit):
    """RPO's mask: prompts appended to the image sequence, and no token may attend to them.
    The class token then sees exactly the frozen model's sequence; without the mask it does not."""
    images = _images(tiny_vit, n=2)
    k = 3
    prompts = torch.randn(1, k, tiny_vit.vision_width, generator=torch.Generator().manual_seed(2))
    seq = 1 + tiny_vit.num_patches + k
    blocked = torch.zeros(seq, seq, dtype=torch.bool)
    blocked[:, -k:] = True
    with torch.no_grad():
        frozen = tiny_vit.encode_image(images)
        read_only = tiny_vit.encode_image(images, prompt_tokens=prompts, attn_mask=blocked)
        open_prompts = tiny_vit.encode_image(images, prompt_tokens=prompts)
        additive = tiny_vit.encode_image(images, prompt_tokens=prompts,
                                         attn_mask=torch.zeros(seq, seq).masked_fill(blocked, float("-inf")))
    torch.testing.assert_close(read_only, frozen, atol=1e-5, rtol=0)
    torch.testing.assert_close(additive, read_only, atol=0, rtol=0)  # bool and -inf masks are the same mask
    assert (open_prompts - frozen).abs().max() > 1e-4


def test_per_sequence_text_masks_reach_their_own_sequence_only(tiny_vit):
    """A ``[N, L, L]`` mask is one mask per sequence (expanded over the heads in
    nn.MultiheadAttention's order): blocking a token in sequence 0 changes only sequence 0."""
    tokens = tiny_vit.tokenize(PROMPTS)
    n, length = tokens.shape
    mask = torch.zeros(n, length, length, dtype=torch.bool)
    mask[0, 2:, 1] = True  # in sequence 0, no later token may read token 1
    with torch.no_grad():
        plain = tiny_vit.encode_text(tokens)
        masked = tiny_vit.encode_text(tokens, attn_mask=mask)
    assert (masked[0] - plain[0]).abs().max() > 1e-4
    torch.testing.assert_close(masked[1:], plain[1:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="attn_mask must be"):
        tiny_vit.encode_text(tokens, attn_mask=torch.zeros(1, 1, n, length, length))


def test_token_features_of_the_pooled_token_equal_the_pooled_features(tiny_vit):
    """``text_token_features`` / ``vision_token_features`` on the final hidden states at the
    pooled position give the encoders' own outputs (so any other token's feature is comparable)."""
    tokens, images = tiny_vit.tokenize(PROMPTS), _images(tiny_vit, n=2)
    seen = {}

    def keep(tower):
        def hook(i, x):
            seen[tower] = x
            return x
        return hook

    with torch.no_grad():
        text = tiny_vit.encode_text(tokens, layer_hook=keep("text"))
        image = tiny_vit.encode_image(images, layer_hook=keep("image"))
        eot = seen["text"][torch.arange(len(tokens)), tokens.argmax(dim=-1)]
        torch.testing.assert_close(tiny_vit.text_token_features(eot), text, atol=1e-6, rtol=0)
        torch.testing.assert_close(tiny_vit.vision_token_features(seen["image"][:, 0]), image, atol=1e-6, rtol=0)


def test_pixel_hook_edits_input(tiny_vit):
    images = _images(tiny_vit, n=2)
    with torch.no_grad():
        same = tiny_vit.encode_image(images, pixel_hook=lambda x: x)
        moved = tiny_vit.encode_image(images, pixel_hook=lambda x: x + 1.0)
    torch.testing.assert_close(same, tiny_vit.encode_image(images).detach(), atol=0, rtol=0)
    assert (moved - same).abs().max() > 1e-4


@pytest.mark.parametrize("kwargs", [
    {"prompt_tokens": torch.zeros(1, 2, 16)},
    {"layer_hook": lambda i, x: x},
])
def test_vision_token_features_on_resnet_raise(tiny_rn, kwargs):
    with pytest.raises(VlmeftError, match="ResNet"):
        tiny_rn.encode_image(_images(tiny_rn), **kwargs)


def test_resnet_local_features_are_the_attention_pool_at_every_position():
    """On a ResNet, ``return_tokens`` gives the attention pool's output with each position
    of the last feature map as the query (PLOT's RN50 local features); the pooled feature is
    bit-identical to the plain path. Checked against a direct computation of the attention
    on a 2x2 grid (64 px input)."""
    import open_clip

    from vlmeft.backbone.factory import register_configs
    from vlmeft.backbone.wrapper import Backbone

    register_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("vlmeft-tiny-rn", pretrained=None, force_image_size=64)
    bb = Backbone(model, open_clip.get_tokenizer("vlmeft-tiny-rn"), name="vlmeft-tiny-rn", pretrained=None,
                  weights_id="random:grid2")
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = bb.encode_image(images)
        pooled, tokens = bb.encode_image(images, return_tokens=True)
        visual = model.visual
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
        pool = visual.attnpool
        seq = torch.cat([x.flatten(2).mean(-1, keepdim=True), x.flatten(2)], dim=-1).transpose(1, 2)  # [B, 1+HW, C]
        seq = seq + pool.positional_embedding
        heads, width = pool.num_heads, seq.shape[-1]
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, width // heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(pool.q_proj(seq)), split(pool.k_proj(seq)), split(pool.v_proj(seq))
        attn = torch.softmax(q @ k.transpose(-1, -2) / (width // heads) ** 0.5, dim=-1)
        expected = pool.c_proj((attn @ v).transpose(1, 2).reshape(seq.shape))
    assert torch.equal(pooled, plain)
    assert tokens.shape == (3, 4, bb.embed_dim)
    torch.testing.assert_close(tokens, expected[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, expected[:, 0], atol=1e-5, rtol=1e-5)


def test_resnet_text_side_hooks_work(tiny_rn):
    tokens = tiny_rn.tokenize(PROMPTS)
    calls = []
    with torch.no_grad():
        tiny_rn.encode_text(tokens, layer_hook=lambda i, x: calls.append(i) or x)
        tiny_rn.encode_image(_images(tiny_rn), pixel_hook=lambda x: x * 0.5)
    assert calls == list(range(tiny_rn.text_layers + 1))


@pytest.mark.parametrize("tower,key", [
    ("text", "model.transformer.resblocks.0.mlp.c_fc.weight"),
    ("image", "model.visual.transformer.resblocks.0.attn.in_proj_weight"),
])
def test_weight_overrides_change_outputs_and_carry_gradients(tiny_vit, tower, key):
    base = dict(tiny_vit.named_parameters())[key]
    before = base.detach().clone()
    delta = torch.zeros_like(base, requires_grad=True)
    with torch.no_grad():
        delta += 0.05 * torch.randn(base.shape, generator=torch.Generator().manual_seed(2))

    def run(overrides):
        if tower == "text":
            return tiny_vit.encode_text(tiny_vit.tokenize(PROMPTS), weight_overrides=overrides, normalize=True)
        return tiny_vit.encode_image(_images(tiny_vit), weight_overrides=overrides, normalize=True)

    with torch.no_grad():
        plain = run(None)
    out = run({key: base + delta})
    assert (out.detach() - plain).abs().max() > 1e-4
    out.sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert base.grad is None and torch.equal(base, before)  # the frozen weight is untouched
    with torch.no_grad():
        torch.testing.assert_close(run(None), plain, atol=0, rtol=0)


def test_zero_shot_weights_are_normalised_template_means(tiny_vit):
    classes, templates = ["red circle", "blue star"], ["a {}.", "a photo of a {}."]
    weights = tiny_vit.zero_shot_weights(classes, templates)
    assert weights.shape == (2, tiny_vit.embed_dim)
    torch.testing.assert_close(weights.norm(dim=-1), torch.ones(2), atol=1e-5, rtol=0)
    with torch.no_grad():
        per = tiny_vit.encode_text(tiny_vit.tokenize([t.format("red circle") for t in templates]), normalize=True)
    expected = torch.nn.functional.normalize(per.mean(0), dim=-1)
    torch.testing.assert_close(weights[0], expected, atol=1e-6, rtol=0)


def test_backbone_is_frozen(tiny_vit):
    assert all(not p.requires_grad for p in tiny_vit.parameters())
    tiny_vit.train()
    assert not tiny_vit.model.training  # dropout stays off: frozen features stay exact


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(VlmeftError, match="unknown backbone 'ViT-B-61'.*did you mean"):
        load_backbone("ViT-B-61", pretrained=None)


def test_missing_weights_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(VlmeftError, match="does not exist") as info:
        load_backbone("vlmeft-tiny-vit", pretrained=str(missing))
    assert str(missing) in str(info.value)


def test_weights_file_round_trip(tiny_vit, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_vit.model.state_dict().items()}, str(path))
    loaded = load_backbone("vlmeft-tiny-vit", pretrained=str(path))
    assert loaded.weights_id.startswith("file:")
    images = _images(tiny_vit)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images), tiny_vit.encode_image(images), atol=0, rtol=0)


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(VlmeftError, match="could not load weights"):
        load_backbone("vlmeft-tiny-vit", pretrained=str(path))
