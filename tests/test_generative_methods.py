"""What is specific to each generative method (the registry-wide behaviour is the
conformance matrix's): zero-initialised starts, where parameters act, LST's frozen
backbone path, VL-PET's granularities, MAGMA's prefix, UniAdapter's sharing; plus the
decoder observers proven able to fail, and the one-line errors of `vlmeft run`."""

from __future__ import annotations

import pytest
import torch

from vlmeft import registry
from vlmeft.cli import main

GENERATIVE = [n for n in registry.names() if "vqa" in registry.get(n).tasks]
PROMPTS, TARGETS = ["what color is the star?", ""], ["red", "a red star on the left"]


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _logits(method, images):  # noqa: ANN001, ANN202
    tokens, _ = method.sequences(PROMPTS, TARGETS)
    with torch.no_grad():
        return method.token_logits(tokens[:, :-1], method.encode_images(images))


def test_the_generative_methods_are_registered():
    assert set(GENERATIVE) == {"coca", "lora", "prefix-tuning", "vl-adapter", "lst", "vl-pet", "llama-adapter",
                               "llama-adapter-v2", "magma", "uniadapter", "clipcap"}


@pytest.mark.parametrize("name", ["llama-adapter", "llama-adapter-v2", "lora"])
def test_zero_initialised_methods_start_at_the_frozen_captioner(name, tiny_coca, images):
    frozen = _logits(registry.build("coca", tiny_coca, [], []), images)
    method = registry.build(name, tiny_coca, [], [], seed=0)
    assert (_logits(method, images) - frozen).abs().max() < 1e-4
    with torch.no_grad():  # and a trained state moves away from it
        for p in method.trainable_parameters():
            p.add_(0.5)
    assert (_logits(method, images) - frozen).abs().max() > 1e-3


def test_llama_adapter_prompts_sit_only_in_the_top_decoder_layers(tiny_coca):
    method = registry.build("llama-adapter", tiny_coca, [], [], overrides={"skip_layers": "1"})
    assert method.prompts.shape[0] == len(tiny_coca.model.text_decoder.resblocks) - 1
    assert method.extra_kv("decoder", 0, torch.zeros(1, 2, 48)) is None
    with torch.no_grad():
        method.gates[0] = 0.7
    assert torch.equal(method.extra_kv("decoder", 1, torch.zeros(1, 2, 48)).gate, torch.full((2,), 0.7))


def test_lst_never_backpropagates_through_the_backbone(tiny_coca, images):
    method = registry.build("lst", tiny_coca, [], [], seed=0)
    seen = []
    original = method.block_out

    def spy(tower, i, x):  # noqa: ANN001, ANN202
        seen.append(x.requires_grad)
        return original(tower, i, x)

    method.block_out = spy
    tokens, labels = method.sequences(PROMPTS, TARGETS)
    loss = method.lm_loss(method.encode_images(images), PROMPTS, TARGETS)
    loss.backward()
    assert seen and not any(seen)  # every ladder tap is a constant for autograd
    assert method.gate_alpha.grad is not None and method.up.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("granularity, constant_over", [("large", ()), ("middle-x", (2,)), ("middle-y", (0, 1)),
                                                        ("small", (1, 2))])
def test_vl_pet_gates_have_their_granularity(granularity, constant_over):
    """G = H / h is resolved per token and channel (large), per token (middle-x), per channel
    (middle-y) or per sequence (small): constant along the other axes of [N, L, d]."""
    from vlmeft.methods.adapter_crossmodal.vl_pet import Gate

    gate = Gate(48, 6, granularity)
    with torch.no_grad():
        if granularity == "middle-y":
            gate.g.normal_()
    x1, h = torch.randn(2, 5, 48), torch.randn(2, 5, 48)
    with torch.no_grad():
        g = gate(x1, h) / h
    for axis in range(3):
        spread = (g - g.mean(dim=axis, keepdim=True)).abs().max()
        assert (spread < 1e-4) == (axis in constant_over), (granularity, axis, float(spread))


def test_magma_prefix_makes_the_text_states_depend_on_the_image(tiny_coca, images):
    from vlmeft.conformance.generative import _text_positions

    for setting, length in (("latent", 3), ("tokens", 8)):
        method = registry.build("magma", tiny_coca, [], [], {"prefix_from": setting, "prefix_length": "3"}).eval()
        memory = method.encode_images(images)
        assert method.prefix(memory).shape == (2, length, 48) and method.prefix_length() == length
        tokens, _ = method.sequences(PROMPTS, TARGETS)
        with torch.no_grad():
            a = _text_positions(method, tokens, memory)
            again = _text_positions(method, tokens, method.encode_images(images))
            other = _text_positions(method, tokens, method.encode_images(images.flip(0)))
        assert (a - again).abs().max() < 1e-6 and (a - other).abs().max() > 1e-4


@pytest.mark.parametrize("mapping", ["transformer", "mlp"])
def test_clipcap_maps_the_pooled_latent_alone_to_a_k_token_prefix(tiny_coca, images, mapping):
    from vlmeft.backbone.captioner import ImageMemory

    settings = {"mapping": mapping, "prefix_length": "3", "clip_length": "2", "num_layers": "2", "heads": "4"}
    method = registry.build("clipcap", tiny_coca, [], [], settings, seed=0).eval()
    assert {n.split(".")[0] for n, _ in method.named_parameters()} == {"mapper"}  # only the mapper trains
    memory = method.encode_images(images)
    with torch.no_grad():
        prefix = method.prefix(memory)
        assert prefix.shape == (2, 3, 48) and method.prefix_length() == 3
        # The cross-attention tokens play no part in the prefix; the pooled latent does.
        assert torch.equal(method.prefix(ImageMemory(memory.latent, torch.zeros_like(memory.tokens))), prefix)
        assert (method.prefix(ImageMemory(memory.latent.flip(0), memory.tokens)) - prefix).abs().max() > 1e-4
        method.config.normalize_prefix = True  # the official option: the latent's norm no longer matters
        assert torch.allclose(method.prefix(ImageMemory(3 * memory.latent, memory.tokens)), method.prefix(memory),
                              atol=1e-5)


def _down_grads(method, images):  # noqa: ANN001, ANN202
    """|grad| of layer 0's shared down-projection from the vision tower alone, then from the text tower alone."""
    down = method.layers[0].down.weight
    method.encode_images(images).tokens.sum().backward()  # vision adapters only
    from_vision = 0.0 if down.grad is None else down.grad.abs().sum().item()
    down.grad = None
    tokens, _ = method.sequences(PROMPTS, TARGETS)
    method.backbone.text_states(tokens, method.hooks).pow(2).sum().backward()  # text adapters only
    return from_vision, 0.0 if down.grad is None else down.grad.abs().sum().item()


def test_uniadapter_shares_its_down_projection_across_towers(tiny_coca, images):
    from vlmeft.backbone import load_backbone

    equal = load_backbone("synthcoca-tiny", pretrained=None)  # vision, text and decoder all 128 wide
    method = registry.build("uniadapter", equal, [], [], seed=0)
    with torch.no_grad():  # a trained state (the text up-projection starts at zero)
        method.layers[0].up.weight.normal_()
    vision, text = _down_grads(method, images)
    assert vision > 0 and text > 0
    # Unequal widths (vlmeft-tiny-coca: vision 64, text 48): the vision tower gets its own.
    method = registry.build("uniadapter", tiny_coca, [], [], seed=0)
    with torch.no_grad():
        method.layers[0].up.weight.normal_()
    vision, text = _down_grads(method, images)
    assert vision == 0 and text > 0 and method.layers[0].vision_down is not None


def test_the_crossmodal_observer_can_fail(tiny_coca):
    """Decoder LoRA is unimodal in the text tower; moved into the multimodal decoder it takes
    part in fusion, and the observer says so (the unimodal signature would then fail)."""
    from vlmeft.conformance.generative import observe
    from vlmeft.conformance.subject import ProbeData, Subject

    data = ProbeData.for_backbone(tiny_coca)
    text_only = observe(Subject("lora", tiny_coca, data))["crossmodal_dependence"]
    fused = observe(Subject("lora", tiny_coca, data, {"towers": "text,decoder"}))["crossmodal_dependence"]
    assert text_only.value == "none", text_only.detail
    assert fused.value == "present" and "lora.decoder_" in fused.detail


def test_the_generative_loop_refuses_parameter_groups_that_miss_a_parameter(tiny_coca):
    import numpy as np

    from vlmeft.data.vl import VLExample, VLSplit
    from vlmeft.engine.generative import fit_generative

    examples = [VLExample("what color is the star?", ("red",), "color", f"q{i}") for i in range(4)]
    train = VLSplit(np.zeros((4, 32, 32, 3), np.uint8), examples, "toy")
    method = registry.build("vl-adapter", tiny_coca, [], [], seed=0, overrides={"epochs": 1})
    assert fit_generative(method, train, None, seed=1, score=lambda m, s: 0.0).steps > 0  # as declared: trains
    params = method.trainable_parameters()
    method.parameter_groups = lambda: [(params[:-1], 1.0)]  # the last parameter left out
    with pytest.raises(RuntimeError, match="exactly once"):
        fit_generative(method, train, None, seed=1, score=lambda m, s: 0.0)


@pytest.fixture(scope="module")
def coca_b32():
    """open_clip's ``coca_ViT-B-32`` shapes, random init (nothing downloaded)."""
    from vlmeft.backbone import load_backbone

    return load_backbone("coca_ViT-B-32", pretrained=None)


def test_every_generative_method_builds_on_coca_vit_b_32(coca_b32):
    """The real-weights path: the paper recipes build on open_clip's CoCa ViT-B/32 (widths 768 /
    512, 12-layer decoder, 76-token context) with every size read off the model."""
    counts = {}
    for name in GENERATIVE:
        counts[name] = registry.build(name, coca_b32, [], [], seed=0).num_trainable()
    assert counts["coca"] == 0 and all(n > 0 for m, n in counts.items() if m != "coca")
    # LLaMA-Adapter V1 on CoCa ViT-B/32: (12 - 2) layers x 10 prompts x 512 + 10 x 8 gates + the image projection
    assert counts["llama-adapter"] == 10 * 10 * 512 + 10 * 8 + (512 * 512 + 512)


@pytest.mark.parametrize("name", ["uniadapter", "lst"])
def test_a_training_step_and_decoding_on_coca_vit_b_32(coca_b32, name):
    """A step for the two methods whose mechanics depend most on the shapes: UniAdapter's
    vision tower (768 wide) beside a 512-wide text side, LST's pruned side network."""
    method = registry.build(name, coca_b32, [], [], seed=0)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    loss = method.lm_loss(method.encode_images(images), ["what is this?"], ["a dog"])
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in method.trainable_parameters())
    method.eval()
    assert isinstance(method.generate(method.encode_images(images), ["what is this?"], 2)[0], str)


# ------------------------------------------------------------------ bad input
def test_a_classification_method_asked_to_answer_names_the_methods_that_can(capsys):
    assert main(["run", "coop", "--task", "world-vqa", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "method 'coop' does classification only" in err
    assert "llama-adapter" in err and "vl-adapter" in err
    assert main(["run", "llama-adapter", "--task", "digits", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coop" in err and "does vqa, captioning only" in err


def test_a_generation_longer_than_the_context_exits_2(capsys):
    code = main(["run", "coca", "--task", "world-captions", "--set", "max_new_tokens=40", "--backbone",
                 "vlmeft-tiny-coca", "--pretrained", "none", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "max_new_tokens" in err and "context of 24 tokens" in err


def test_an_answer_vocabulary_mismatch_exits_2(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{i}.png")
    doc = {"images": [{"id": i, "file_name": f"{i}.png", "split": s} for i, s in enumerate(("train", "val", "test"))],
           "questions": [{"question_id": i, "image_id": i, "question": "what is it?"} for i in range(3)],
           "annotations": [{"question_id": i, "image_id": i, "answers": [{"answer": "a giraffe"}]} for i in range(3)]}
    (tmp_path / "vqa.json").write_text(json.dumps(doc))
    code = main(["run", "coca", "--task", f"vqa-json:{tmp_path / 'vqa.json'}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "answer vocabulary mismatch" in err and "'giraffe'" in err and "question 0" in err


def test_eval_scores_a_saved_generative_checkpoint_as_run_did(tmp_path, capsys):
    """`vlmeft eval` on a VQA checkpoint gives the test accuracy `run --save` reported; an
    unknown domain is one line and exit 2."""
    import json

    ckpt = tmp_path / "ckpt"  # on the shipped synthcoca-tiny: a random captioner answers nothing right anywhere
    assert main(["run", "lora", "--task", "world-vqa", "--shots", "1", "--seed", "1", "--set", "epochs=1",
                 "--save", str(ckpt), "--json", "--no-progress"]) == 0
    ran = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["eval", "lora", "--checkpoint", str(ckpt), "--task", "world-vqa", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["accuracy"] == ran["accuracy"] and evaluated["backbone"] == "synthcoca-tiny"
    assert main(["eval", "lora", "--checkpoint", str(ckpt), "--task", "world-vqa", "--domain", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no domain 'nope'" in err
