"""Config validation in ``Method.__init__``: a method built directly in Python, without
``--set`` or a checkpoint, still refuses a bad config with a clear VlmeftError."""

from __future__ import annotations

import pytest

from vlmeft import registry
from vlmeft.errors import VlmeftError

CLASSES = ["red circle", "blue square", "green star"]
TEMPLATES = ["a photo of a {}."]


@pytest.mark.parametrize(
    ("name", "bad", "field"),
    [
        ("vpt", {"n_tokens": 0}, "n_tokens"),  # a check of VPT's own Config
        ("ivlp", {"n_ctx_vision": 0}, "n_ctx_vision"),  # a check of IVLP's own Config
        ("coop", {"batch_size": 0}, "batch_size"),  # a base check, on a method without its own call
        ("zsclip", {"lr": -1.0}, "lr"),
    ],
)
def test_direct_construction_validates_the_config(tiny_vit, name, bad, field):
    cls = registry.get(name)
    config = cls.Config(**bad)  # dataclasses do not validate on construction
    with pytest.raises(VlmeftError) as err:
        cls(tiny_vit, CLASSES, TEMPLATES, config)
    message = str(err.value)
    assert field in message
    assert f"method '{name}' config" in message  # attributed to the method, not to --set
    assert "--set" not in message
    assert "\n" not in message


def test_a_valid_config_is_kept_as_given(tiny_vit):
    cls = registry.get("vpt")
    config = cls.Config(n_tokens=3, deep=False)
    method = cls(tiny_vit, CLASSES, TEMPLATES, config)
    assert method.config is config
    assert len(method.prompts) == 1 and method.prompts[0].shape[0] == 3  # shallow, 3 tokens


def test_another_methods_config_is_refused(tiny_vit):
    vpt, ivlp = registry.get("vpt"), registry.get("ivlp")
    with pytest.raises(VlmeftError, match="method 'vpt' takes a .*Config, got Config"):
        vpt(tiny_vit, CLASSES, TEMPLATES, ivlp.Config())


def test_cli_overrides_still_name_set(tiny_vit):
    with pytest.raises(VlmeftError, match="^--set: n_tokens must be at least 1"):
        registry.build("vpt", tiny_vit, CLASSES, TEMPLATES, {"n_tokens": "0"})
