"""The captioner wrapper: it reproduces open_clip's CoCa exactly, its hooks are exact when
they change nothing, and greedy generation is batched without changing any row."""

from __future__ import annotations

import pytest
import torch

from vlmeft.backbone.captioner import ExtraKV, Hooks, run_block
from vlmeft.errors import VlmeftError


@pytest.fixture(scope="module")
def batch(tiny_coca):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 32, 32, generator=g)
    tokens = tiny_coca.tokenize(["a red circle on the left.", "what color is the star? red", "two"])[:, :12]
    return images, tokens


def test_logits_equal_open_clip_coca_forward(tiny_coca, batch):
    images, tokens = batch
    with torch.no_grad():
        ref = tiny_coca.model(images, tokens)["logits"]  # CoCa's own pass (class token, pad mask and all)
        memory = tiny_coca.image_memory(images)
        ours = tiny_coca.logits(tokens[:, :-1], memory)
        hooked = tiny_coca.logits(tokens[:, :-1], tiny_coca.image_memory(images, Hooks()), Hooks())
    real = tokens[:, 1:] != 0  # positions that predict a real token (padding positions are never read)
    assert ref.shape == ours.shape and ref.abs().max() > 0
    assert (ref - ours)[real].abs().max() == 0
    assert (ref - hooked)[real].abs().max() < 1e-5  # the recomputed attention: equal to rounding
    torch.testing.assert_close(memory.latent, tiny_coca.model.encode_image(images, normalize=False))


def test_noop_hooks_match_the_module_call_and_a_change_shows(tiny_coca):
    block = tiny_coca.model.text_decoder.cross_attn[0]
    x, mem = torch.randn(2, 5, 48), torch.randn(2, 8, 48)
    with torch.no_grad():
        ref = block(x, k_x=mem, v_x=mem)
        same = run_block(block, x, tower="cross", i=0, hooks=Hooks(), memory=mem)

        class Double(Hooks):
            def mlp_out(self, tower, i, x, out):  # noqa: ANN001, ANN201
                return 2 * out

        other = run_block(block, x, tower="cross", i=0, hooks=Double(), memory=mem)
    assert (ref - same).abs().max() < 1e-5
    assert (ref - other).abs().max() > 1e-2


def test_gated_extra_keys_start_inert_and_plain_ones_do_not(tiny_coca):
    block = tiny_coca.model.text_decoder.resblocks[0]
    x = torch.randn(2, 5, 48)
    mask = tiny_coca.model.text_decoder.attn_mask[:5, :5]
    keys = torch.randn(1, 3, 48)

    class Extra(Hooks):
        def __init__(self, gate):  # noqa: ANN001
            self.gate = gate

        def extra_kv(self, tower, i, q_in):  # noqa: ANN001, ANN201
            return ExtraKV(keys, keys, self.gate)

    with torch.no_grad():
        ref = block(x, attn_mask=mask)
        zero_gate = run_block(block, x, tower="decoder", i=0, hooks=Extra(torch.zeros(2)), mask=mask)
        open_gate = run_block(block, x, tower="decoder", i=0, hooks=Extra(torch.ones(2)), mask=mask)
        joint = run_block(block, x, tower="decoder", i=0, hooks=Extra(None), mask=mask)
    assert (ref - zero_gate).abs().max() < 1e-5  # LLaMA-Adapter's zero-init gate: the frozen model
    assert (ref - open_gate).abs().max() > 1e-3 and (ref - joint).abs().max() > 1e-3


def test_batched_greedy_generation_equals_one_row_at_a_time(tiny_coca):
    from vlmeft import registry

    method = registry.build("coca", tiny_coca, [], [])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    memory = method.encode_images(images)
    prompts = ["what color is the star?", "", "how many"]  # three prompt lengths in one batch
    together = method.generate(memory, prompts, 5)
    alone = [method.generate(memory.index([i]), [p], 5)[0] for i, p in enumerate(prompts)]
    assert together == alone and any(together)


def test_a_generation_longer_than_the_context_is_refused(tiny_coca):
    from vlmeft import registry

    method = registry.build("coca", tiny_coca, [], [])
    memory = method.encode_images(torch.randn(1, 3, 32, 32))
    with pytest.raises(VlmeftError, match="exceeds vlmeft-tiny-coca's context of 24 tokens"):
        method.generate(memory, ["what color is the star?"], 30)
    tiny_coca.check_length(10, 14)  # exactly the context: allowed
    with pytest.raises(VlmeftError, match="generation length 15"):
        tiny_coca.check_length(10, 15)


def test_a_restricted_vocabulary_is_enforced(tiny_coca):
    from vlmeft.backbone.captioner import Captioner

    words = ["red", "star", "a"]
    ids = sorted({tiny_coca.sot_id, tiny_coca.eot_id, *(i for w in words for i in tiny_coca.encode_words(w))})
    small = Captioner(tiny_coca.model, tiny_coca.tokenizer, name="small", pretrained=None, weights_id="x",
                      output_ids=torch.tensor(ids))
    assert small.unknown_words("a red star") == [] and small.unknown_words("a giraffe") == ["giraffe"]
    logits = small.logits(small.tokenize(["a red star"])[:, :4], small.image_memory(torch.randn(1, 3, 32, 32)))
    assert logits.shape[-1] == len(ids)  # only the allowed columns are computed


def test_generative_methods_refuse_a_clip_backbone(tiny_vit):
    from vlmeft import registry

    with pytest.raises(VlmeftError, match="needs a captioning backbone"):
        registry.build("llama-adapter", tiny_vit, [], [])
