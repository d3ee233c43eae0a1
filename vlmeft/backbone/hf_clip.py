"""A `transformers` ``CLIPModel`` folder (``save_pretrained`` output) as an open_clip CLIP.

No `transformers` import is needed: the folder's ``config.json`` becomes an open_clip
model config and its tensors are renamed into open_clip's layout. Both libraries compute
the same function, so the converted model's features equal the source's (tested to 1e-5
against ``CLIPModel.get_image_features`` / ``get_text_features``):

- q, k and v projections are concatenated into ``nn.MultiheadAttention``'s fused
  ``in_proj_weight`` / ``in_proj_bias``;
- ``visual_projection`` / ``text_projection`` are ``nn.Linear`` weights ``[E, D]``;
  open_clip keeps their transposes ``[D, E]`` as ``visual.proj`` / ``text_projection``;
- ``hidden_act`` ``quick_gelu`` (OpenAI's releases) becomes open_clip's ``quick_gelu``.

Text is tokenised with open_clip's CLIP BPE, OpenAI's vocabulary; a model with another
vocabulary size, or other settings open_clip cannot express (mismatched activations or
layer-norm epsilons between the towers), is refused rather than approximated.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from vlmeft.errors import VlmeftError

CLIP_VOCAB = 49408  # OpenAI's BPE, which open_clip's SimpleTokenizer implements
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def is_transformers_clip(folder: Path) -> bool:
    """Whether ``folder`` looks like a saved ``transformers`` CLIPModel."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "clip"


def model_config(folder: Path) -> dict:
    """The open_clip model config (``embed_dim``, ``quick_gelu``, ``vision_cfg``, ``text_cfg``)."""
    where = str(Path(folder) / "config.json")
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    try:
        text, vision = config["text_config"], config["vision_config"]
        acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
        eps = {float(text.get("layer_norm_eps", 1e-5)), float(vision.get("layer_norm_eps", 1e-5))}
        if len(acts) != 1 or not acts <= {"gelu", "quick_gelu"}:
            raise VlmeftError(f"hidden_act {sorted(acts)}: open_clip builds both towers with one of gelu or "
                              "quick_gelu", where=where)
        if eps != {1e-5}:
            raise VlmeftError(f"layer_norm_eps {sorted(eps)}: open_clip's CLIP uses 1e-5", where=where)
        if int(text.get("vocab_size", CLIP_VOCAB)) != CLIP_VOCAB:
            raise VlmeftError(f"text vocab_size {text['vocab_size']}: only OpenAI's CLIP vocabulary "
                              f"({CLIP_VOCAB} tokens) is supported", where=where)
        v_width, t_width = int(vision["hidden_size"]), int(text["hidden_size"])
        return {
            "embed_dim": int(config.get("projection_dim", 512)),
            "quick_gelu": acts == {"quick_gelu"},
            "vision_cfg": {
                "image_size": int(vision["image_size"]),
                "patch_size": int(vision["patch_size"]),
                "layers": int(vision["num_hidden_layers"]),
                "width": v_width,
                "head_width": v_width // int(vision["num_attention_heads"]),
                "mlp_ratio": int(vision["intermediate_size"]) / v_width,
            },
            "text_cfg": {
                "context_length": int(text.get("max_position_embeddings", 77)),
                "vocab_size": CLIP_VOCAB,
                "width": t_width,
                "heads": int(text["num_attention_heads"]),
                "layers": int(text["num_hidden_layers"]),
                "mlp_ratio": int(text["intermediate_size"]) / t_width,
            },
        }
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise VlmeftError(f"not a CLIP config open_clip can build ({type(err).__name__}: {err})", where=where) from None


def weights_file(folder: Path) -> Path:
    """The folder's weights file (safetensors preferred)."""
    for name in WEIGHT_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise VlmeftError(f"no weights in this transformers folder (looked for {', '.join(WEIGHT_FILES)})",
                      where=str(folder))


def read_tensors(path: Path, read_file) -> dict[str, Tensor]:  # noqa: ANN001 (the resolver's file reader)
    """All tensors of the weights file, following a sharded index."""
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text(encoding="utf-8"))
        shards = sorted(set(index.get("weight_map", {}).values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(read_file(path.parent / shard))
        return state
    return read_file(path)


# transformers name -> open_clip name, for modules with a weight and a bias
_BLOCK = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
          ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))
_NORMS = (("text_model.final_layer_norm", "ln_final"), ("vision_model.pre_layrnorm", "visual.ln_pre"),  # sic
          ("vision_model.post_layernorm", "visual.ln_post"))
_SAME = (("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
         ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
         ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
         ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
         ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"))


def _weight_and_bias(src: dict[str, Tensor], pairs, src_prefix: str, out_prefix: str,  # noqa: ANN001
                     out: dict[str, Tensor]) -> None:
    for hf, oc in pairs:
        for kind in ("weight", "bias"):
            out[f"{out_prefix}{oc}.{kind}"] = src[f"{src_prefix}{hf}.{kind}"]


def _block(src: dict[str, Tensor], prefix: str, out_prefix: str, out: dict[str, Tensor]) -> None:
    attn = f"{prefix}.self_attn"
    out[f"{out_prefix}.attn.in_proj_weight"] = torch.cat([src[f"{attn}.{p}_proj.weight"] for p in "qkv"])
    out[f"{out_prefix}.attn.in_proj_bias"] = torch.cat([src[f"{attn}.{p}_proj.bias"] for p in "qkv"])
    _weight_and_bias(src, _BLOCK, f"{prefix}.", f"{out_prefix}.", out)


def convert_state(src: dict[str, Tensor], config: dict, where: str) -> dict[str, Tensor]:
    """``CLIPModel.state_dict()`` -> open_clip ``CLIP.state_dict()``."""
    src = {k.removeprefix("clip."): v for k, v in src.items()}
    out: dict[str, Tensor] = {}
    try:
        out.update({oc: src[hf] for hf, oc in _SAME})
        _weight_and_bias(src, _NORMS, "", "", out)
        for i in range(config["text_cfg"]["layers"]):
            _block(src, f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}", out)
        for i in range(config["vision_cfg"]["layers"]):
            _block(src, f"vision_model.encoder.layers.{i}", f"visual.transformer.resblocks.{i}", out)
        out["text_projection"] = src["text_projection.weight"].t().contiguous()
        out["visual.proj"] = src["visual_projection.weight"].t().contiguous()
        out["logit_scale"] = src["logit_scale"].reshape(())
    except KeyError as err:
        raise VlmeftError(f"tensor {err} is missing: not a transformers CLIPModel state", where=where) from None
    return out
