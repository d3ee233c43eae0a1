"""Weights resolve here, in one place, and never silently.

``resolve(name, pretrained)`` turns a ``--backbone`` / ``--pretrained`` pair into an
open_clip model with its weights loaded, the name to record, and an id of the weights:

==========================  ==============================================================
``pretrained``              what loads
==========================  ==============================================================
``default``                 synthclip-tiny's or synthcoca-tiny's shipped weights (checksum
                            verified). Any other backbone has no default: a one-line error
                            says how to pass one.
``none``                    random weights (seeded), with a warning line; vlmeft's own
                            test configs (``vlmeft-tiny-*``) are random by design and warn
                            about nothing.
an open_clip tag            ``openai``, ``laion2b_s34b_b88k``, ... (open_clip's cache).
a file                      safetensors, or a torch file read with ``weights_only=True``.
``gelu:PATH``               a file whose model was trained with GELU (see below).
``hf-hub:ORG/NAME``         open_clip's Hugging Face layout from the local HF cache
                            (``HF_HUB_OFFLINE=1`` keeps the hub out of it).
a folder                    a ``transformers`` CLIPModel (``save_pretrained``), converted
                            to open_clip (:mod:`vlmeft.backbone.hf_clip`), or a folder with
                            ``open_clip_config.json`` (what ``vlmeft export`` writes).
==========================  ==============================================================

Every file is checked before it is trusted: keys and shapes must fit the named model
(the error names the first tensor that does not), and nothing is resized or skipped.

QuickGELU. OpenAI trained CLIP with QuickGELU; open_clip's plain names (``ViT-B-16``)
build GELU, its ``-quickgelu`` names QuickGELU. GELU features of QuickGELU weights come
out about 1% off, with nothing to show for it, so:

- weights that *declare* their activation are built with it: OpenAI's own format (the
  ``input_resolution`` / ``context_length`` / ``vocab_size`` entries of its release), a
  tag, a transformers config's ``hidden_act``, an open_clip config's ``quick_gelu``.
  Under a name with the other activation the model is built as the matching name
  (``ViT-B-16`` -> ``ViT-B-16-quickgelu``) and a note line says so;
- weights in open_clip's plain layout declare nothing. If their shapes are those of an
  architecture OpenAI released and the name is a GELU one, they are refused with a
  message naming the ``-quickgelu`` model (for OpenAI, DFN or MetaCLIP weights) and
  ``gelu:PATH`` (for weights trained with GELU, such as LAION's or DataComp's).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch
from torch import Tensor, nn

from vlmeft.backbone import DEFAULT_BACKBONE
from vlmeft.errors import VlmeftError
from vlmeft.recipes import EMBEDDED_BACKBONES

# Embedded backbone -> the spec recorded for its shipped weights ("synthclip", "synthcoca"): the
# weights-id prefixes by which the recipes recognise shipped weights, without their colon.
SHIPPED_BY_MODEL = {name: prefix.rstrip(":") for name, prefix in EMBEDDED_BACKBONES.items()}
SHIPPED = SHIPPED_BY_MODEL[DEFAULT_BACKBONE]
HOW = ("pass weights with --pretrained TAG (e.g. openai, from open_clip's cache), a weights file, "
       "hf-hub:ORG/NAME, a transformers CLIP folder, or none (random weights)")
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
QUICKGELU = "-quickgelu"
_CONFIG_DIR = Path(__file__).with_name("configs")  # vlmeft's random-only test configs
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")


@dataclass
class Resolved:
    """An open_clip model with its weights loaded (on the CPU), and how to name them."""

    model: nn.Module
    tokenizer: Callable
    name: str  # the backbone name to record (may differ from the one asked for: -quickgelu)
    pretrained: str | None  # a spec that resolves to the same weights again (None: random)
    weights_id: str  # identifies the weights in cache keys and checkpoints
    model_cfg: dict | None = None  # open_clip config, when it is not a registered name's
    output_ids: list[int] | None = None  # the token ids a captioner may generate (None: all)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ names and configs
@contextmanager
def _quiet() -> Iterator[None]:
    """open_clip logs "initialized randomly" for every model built before its weights load."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _register() -> None:
    from vlmeft.backbone.factory import register_configs

    register_configs()


def is_test_config(name: str) -> bool:
    """vlmeft's own random-only configs (no weights exist for them)."""
    return (_CONFIG_DIR / f"{name}.json").is_file()


def _base(name: str) -> tuple[str, bool]:
    """``(open_clip config name, force QuickGELU)``: ``X-quickgelu`` for any model ``X``
    whose config has no such twin is ``X`` built with QuickGELU."""
    if name in open_clip.list_models():
        return name, False
    if name.endswith(QUICKGELU) and name[: -len(QUICKGELU)] in open_clip.list_models():
        return name[: -len(QUICKGELU)], True
    close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise VlmeftError(f"unknown backbone '{name}'{hint}", where="--backbone")


def uses_quick_gelu(name: str) -> bool:
    base, force = _base(name)
    return force or bool((open_clip.get_model_config(base) or {}).get("quick_gelu", False))


def with_activation(name: str, quick_gelu: bool) -> str:
    """The name of ``name``'s architecture built with (or without) QuickGELU."""
    if uses_quick_gelu(name) == quick_gelu:
        return name
    if quick_gelu:
        return name + QUICKGELU
    plain = name.removesuffix(QUICKGELU)
    if plain in open_clip.list_models() and not uses_quick_gelu(plain):
        return plain
    raise VlmeftError(f"weights trained with GELU, but '{name}' has no GELU twin", where="--backbone")


def openai_released(name: str) -> bool:
    """Whether OpenAI released weights for ``name``'s architecture (they use QuickGELU)."""
    base, _ = _base(name)
    return "openai" in open_clip.list_pretrained_tags_by_model(base) or \
        "openai" in open_clip.list_pretrained_tags_by_model(base + QUICKGELU)


def model_config(name: str) -> dict:
    """The open_clip config that builds ``name`` (QuickGELU set for a synthetic ``-quickgelu``)."""
    base, force = _base(name)
    cfg = dict(open_clip.get_model_config(base) or {})
    if force:
        cfg["quick_gelu"] = True
    return cfg


def _create(name: str, device: str = "cpu") -> nn.Module:
    base, force = _base(name)
    with _quiet():
        return open_clip.create_model(base, pretrained=None, device=device, force_quick_gelu=force)


def _tokenizer(name: str) -> Callable:
    return open_clip.get_tokenizer(_base(name)[0])


def _model_from_config(cfg: dict) -> nn.Module:
    from open_clip.model import CLIP

    with _quiet():
        return CLIP(**json.loads(json.dumps(cfg)))


# ---------------------------------------------------------------------- reading files
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_state_file(path: Path) -> dict[str, Tensor]:
    """All tensors of a weights file: safetensors, or ``torch.load(weights_only=True)``."""
    path = Path(path)
    where = str(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 (safetensors raises its own types)
            raise VlmeftError(f"could not load weights: damaged safetensors file ({_first_line(err)})",
                              where=where) from None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist()):
                raise VlmeftError("could not load weights: a TorchScript archive (OpenAI's original .pt release), "
                                  "which vlmeft does not unpickle; use --pretrained openai, or save its state_dict() "
                                  "as safetensors", where=where)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises many types for a damaged or foreign file)
        raise VlmeftError(f"could not load weights ({_first_line(err)})", where=where) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # an open_clip training checkpoint
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise VlmeftError("could not load weights: the file holds no state dict of tensors", where=where)
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}  # saved from DistributedDataParallel
    return obj


def _openai_format(state: dict[str, Tensor]) -> bool:
    return all(k in state for k in OPENAI_EXTRA_KEYS)


def _fit(name: str, state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """``state`` checked against ``name``'s tensors (built on the meta device: no memory):
    the first missing, unexpected or mis-shaped tensor is an error. Returns it ready to
    load (OpenAI's extra entries dropped, old text layouts converted)."""
    with torch.device("meta"):
        expected = _create(name, device="meta").state_dict()
    state = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}
    if "text.positional_embedding" in expected and "positional_embedding" in state:
        from open_clip.model import convert_to_custom_text_state_dict

        state = convert_to_custom_text_state_dict(state)
    for key, ref in expected.items():
        if key not in state:
            raise VlmeftError(f"tensor '{key}' of '{name}' is missing from the weights", where=where)
        got = state[key]
        if key == "logit_scale" and got.numel() == ref.numel() == 1:
            state[key] = got.reshape(ref.shape)
        elif tuple(got.shape) != tuple(ref.shape):
            raise VlmeftError(f"tensor '{key}' has shape {list(got.shape)} in the weights, but '{name}' expects "
                              f"{list(ref.shape)}: these weights are not a '{name}'", where=where)
    extra = [k for k in state if k not in expected]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise VlmeftError(f"unexpected tensor '{extra[0]}'{more}: these weights are not a '{name}'", where=where)
    return state


def _activation(name: str, declared: bool | None, why: str, where: str) -> tuple[str, list[str]]:
    """The model name to build for weights that declare QuickGELU (True), GELU (False) or
    nothing (None), and the note that explains a change of name."""
    if declared is None:
        return name, []
    target = with_activation(name, declared)
    if target == name:
        return name, []
    act = "QuickGELU" if declared else "GELU"
    return target, [f"note: {why} declare {act}: building '{target}' instead of '{name}' ({where})"]


def _refuse_undeclared_openai_shapes(name: str, spec: str, where: str) -> None:
    if uses_quick_gelu(name) or not openai_released(name):
        return
    raise VlmeftError(
        f"these weights have the tensor shapes of OpenAI's {name} release, which was trained with QuickGELU "
        f"(as were DFN's and MetaCLIP's), but '{name}' builds GELU: pass --backbone {name}{QUICKGELU} for such "
        f"weights, or --pretrained gelu:{spec} if they were trained with GELU (e.g. LAION's, DataComp's)",
        where=where)


def _load_named(name: str, state: dict[str, Tensor], *, declared: bool | None, why: str, spec: str,
                where: str) -> tuple[nn.Module, str, list[str]]:
    """Build ``name`` (or its activation twin) and load ``state`` into it, checked."""
    target, notes = _activation(name, declared, why, where)
    state = _fit(target, state, where)
    if declared is None:
        _refuse_undeclared_openai_shapes(target, spec, where)
    model = _create(target)
    model.load_state_dict(state, strict=True)
    return model, target, notes


# ---------------------------------------------------------------------------- sources
def _random(name: str, seed: int) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(seed)  # random init, reproducible (and so is what the caller draws next)
    model = _create(name)
    decoder = getattr(model, "text_decoder", None)
    if decoder is not None:  # open_clip leaves a CoCa's output projection uninitialised (torch.empty)
        torch.nn.init.normal_(decoder.text_projection, std=decoder.text_projection.shape[0] ** -0.5)
    warnings = [] if is_test_config(name) else [
        f"warning: '{name}' has random weights (--pretrained none): its features mean nothing and accuracies "
        "measure the method alone; pass real weights for results"]
    return model, warnings


def _shipped(name: str) -> Resolved:
    if name not in SHIPPED_BY_MODEL:
        raise VlmeftError(f"shipped weights exist only for {', '.join(SHIPPED_BY_MODEL)}, not '{name}'",
                          where="--pretrained")
    spec = SHIPPED_BY_MODEL[name]
    shipped = importlib.import_module(f"vlmeft.backbone.{spec}")  # the package that ships them
    model = _create(name)
    model.load_state_dict(shipped.state_dict())  # verifies the shipped checksum
    # A captioner's shipped weights hold only the world's tokens: generation is restricted to them.
    vocabulary = getattr(shipped, "vocabulary_ids", None)
    output_ids = vocabulary() if vocabulary is not None else None
    return Resolved(model, _tokenizer(name), name, spec, f"{spec}:{shipped.sha256()[:16]}", output_ids=output_ids)


def _tag(name: str, tag: str) -> Resolved:
    base, force = _base(name)
    tags = open_clip.list_pretrained_tags_by_model(base if not force else name)
    if tag not in tags:
        known = f"its tags: {', '.join(tags)}" if tags else "open_clip has no tags for it"
        raise VlmeftError(f"'{tag}' is neither a weights file nor an open_clip tag of '{name}' ({known}); {HOW}",
                          where="--pretrained")
    quick = bool(open_clip.get_pretrained_cfg(base, tag).get("quick_gelu", False))
    target, notes = _activation(name, quick, f"open_clip's tag '{tag}' weights", "--pretrained")
    base, force = _base(target)
    try:
        with _quiet():
            model = open_clip.create_model(base, pretrained=tag, device="cpu", force_quick_gelu=force)
    except Exception as err:  # noqa: BLE001 (download and cache errors of many kinds)
        raise VlmeftError(f"could not load open_clip weights '{tag}' for '{target}' (not in open_clip's cache, "
                          f"and no network?): {_first_line(err)}", where="--pretrained") from None
    return Resolved(model, _tokenizer(target), target, tag, f"tag:{tag}", notes=notes)


def _file(name: str, path: Path, spec: str, *, gelu: bool) -> Resolved:
    where = str(path)
    state = read_state_file(path)
    declared: bool | None = False if gelu else (True if _openai_format(state) else None)
    why = "you (gelu:)" if gelu else "weights in OpenAI's format"
    model, target, notes = _load_named(name, state, declared=declared, why=why, spec=str(path), where=where)
    recorded = ("gelu:" if gelu else "") + str(path.resolve())  # reloads from any working directory
    return Resolved(model, _tokenizer(target), target, recorded, f"file:{file_sha256(path)[:16]}", notes=notes)


def _open_clip_folder(folder: Path) -> tuple[dict, Path]:
    """(open_clip config, weights file) of a folder in open_clip's HF layout."""
    where = str(folder / "open_clip_config.json")
    try:
        config = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
        cfg = config["model_cfg"]
        cfg["vision_cfg"], cfg["text_cfg"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise VlmeftError(f"not an open_clip config with a model_cfg ({_first_line(err)})", where=where) from None
    for file in _OPEN_CLIP_FILES:
        if (folder / file).is_file():
            return config, folder / file
    raise VlmeftError(f"no weights next to open_clip_config.json (looked for {', '.join(_OPEN_CLIP_FILES)})",
                      where=str(folder))


def _with_config(name: str, derived: str, cfg: dict, state: dict[str, Tensor], *, spec: str, weights_id: str,
                 why: str, where: str, preprocess: dict | None = None) -> Resolved:
    """Weights that carry their own model config: built from it, unless a registered
    ``--backbone`` name is given, which must then fit them."""
    if cfg.get("custom_text") or "timm_model_name" in cfg["vision_cfg"] or "hf_model_name" in cfg["text_cfg"]:
        raise VlmeftError("only open_clip's plain CLIP architecture (no timm or HF towers) is supported here",
                          where=where)
    quick = bool(cfg.get("quick_gelu", False))
    if name not in (DEFAULT_BACKBONE, derived):
        model, target, notes = _load_named(name, state, declared=quick, why=why, spec=spec, where=where)
        return Resolved(model, _tokenizer(target), target, spec, weights_id, notes=notes)
    model = _model_from_config(cfg)
    expected = model.state_dict()
    for key, ref in expected.items():  # the same checks as _fit, against the folder's own config
        if key not in state:
            raise VlmeftError(f"tensor '{key}' is missing from the weights", where=where)
        if tuple(state[key].shape) != tuple(ref.shape) and not (key == "logit_scale" and state[key].numel() == 1):
            raise VlmeftError(f"tensor '{key}' has shape {list(state[key].shape)}, its config expects "
                              f"{list(ref.shape)}", where=where)
    extra = [k for k in state if k not in expected]
    if extra:
        raise VlmeftError(f"unexpected tensor '{extra[0]}' for its config", where=where)
    state = {k: (v.reshape(expected[k].shape) if k == "logit_scale" else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    if preprocess:
        from open_clip.model import set_model_preprocess_cfg

        set_model_preprocess_cfg(model, {**getattr(model.visual, "preprocess_cfg", {}), **preprocess})
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=int(cfg["text_cfg"].get("context_length", 77)))
    return Resolved(model, tokenizer, derived, spec, weights_id, model_cfg=cfg)


def _folder(name: str, folder: Path, spec: str) -> Resolved:
    from vlmeft.backbone import hf_clip

    if hf_clip.is_transformers_clip(folder):
        cfg = hf_clip.model_config(folder)
        file = hf_clip.weights_file(folder)
        state = hf_clip.convert_state(hf_clip.read_tensors(file, read_state_file), cfg, str(file))
        return _with_config(name, f"transformers:{folder}", cfg, state, spec=spec, where=str(folder),
                            weights_id=f"transformers:{file_sha256(file)[:16]}", why="its transformers config")
    if (folder / "open_clip_config.json").is_file():
        config, file = _open_clip_folder(folder)
        return _with_config(name, f"local-dir:{folder}", config["model_cfg"], read_state_file(file), spec=spec,
                            where=str(folder), weights_id=f"file:{file_sha256(file)[:16]}",
                            why="its open_clip_config.json", preprocess=config.get("preprocess_cfg"))
    raise VlmeftError("a weights folder must hold a transformers CLIPModel (config.json with model_type 'clip') "
                      "or open_clip_config.json with its weights", where=str(folder))


def _hub(name: str, spec: str) -> Resolved:
    repo = spec.removeprefix("hf-hub:").strip("/")
    if repo.count("/") != 1:
        raise VlmeftError(f"expected hf-hub:ORG/NAME, got '{spec}'", where="--pretrained")
    from open_clip.pretrained import download_pretrained_from_hf

    try:
        config_path = Path(download_pretrained_from_hf(repo, filename="open_clip_config.json"))
        weights = Path(download_pretrained_from_hf(repo))
    except Exception as err:  # noqa: BLE001 (huggingface_hub's offline / not-found errors)
        raise VlmeftError(f"'{repo}' is not in the local Hugging Face cache with open_clip_config.json and its "
                          f"weights ({_first_line(err)})", where="--pretrained") from None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or "model_cfg" not in config:
        raise VlmeftError("open_clip_config.json has no model_cfg", where=str(config_path))
    resolved = _with_config(name, f"hf-hub:{repo}", config["model_cfg"], read_state_file(weights),
                            spec=f"hf-hub:{repo}", where=str(weights), why="its open_clip_config.json",
                            weights_id=f"hf-hub:{file_sha256(weights)[:16]}", preprocess=config.get("preprocess_cfg"))
    if resolved.name == f"hf-hub:{repo}":
        resolved.tokenizer = open_clip.get_tokenizer(f"hf-hub:{repo}")
    return resolved


# --------------------------------------------------------------------------- resolve
def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or Path(text).suffix != "" or text.startswith("~")


def resolve(name: str = DEFAULT_BACKBONE, pretrained: str | None = "default", *, seed: int = 0) -> Resolved:
    """The model named ``name`` with the weights ``pretrained`` (see the module notes)."""
    _register()
    spec = "none" if pretrained is None else str(pretrained).strip()
    low = spec.lower()
    if name.startswith("hf-hub:"):  # the hub's config names the architecture
        if low != "default" and spec != name:
            raise VlmeftError(f"'{name}' carries its own weights: pass --pretrained default (or leave it out)",
                              where="--pretrained")
        return _hub(name, name)
    if name.startswith(("transformers:", "local-dir:")):  # recorded names of folders: the folder decides
        folder = name.split(":", 1)[1]
        if low == "default" or Path(spec).expanduser() == Path(folder):
            return _folder(name, Path(folder), folder)
        raise VlmeftError(f"'{name}' is a weights folder: pass --pretrained {folder}", where="--pretrained")
    if low.startswith("hf-hub:"):
        return _hub(name, spec)
    _base(name)  # unknown names fail first, with suggestions
    if low in ("", "none", "random"):
        model, warnings = _random(name, seed)
        return Resolved(model, _tokenizer(name), name, None, f"random:{seed}", warnings=warnings)
    if low == "default":
        if name in SHIPPED_BY_MODEL:
            return _shipped(name)
        if is_test_config(name):
            model, warnings = _random(name, seed)
            return Resolved(model, _tokenizer(name), name, None, f"random:{seed}", warnings=warnings)
        tags = open_clip.list_pretrained_tags_by_model(_base(name)[0])
        more = f", and {len(tags) - 4} more" if len(tags) > 4 else ""
        known = f" (open_clip tags for it: {', '.join(tags[:4])}{more})" if tags else ""
        raise VlmeftError(f"backbone '{name}' has no default weights; {HOW}{known}", where="--pretrained")
    if low in SHIPPED_BY_MODEL.values():
        if SHIPPED_BY_MODEL.get(name) != low:
            raise VlmeftError(f"'{low}' weights exist only for "
                              f"{next(k for k, v in SHIPPED_BY_MODEL.items() if v == low)}, not '{name}'",
                              where="--pretrained")
        return _shipped(name)
    gelu = low.startswith("gelu:")
    text = spec[len("gelu:"):] if gelu else spec
    path = Path(text).expanduser()
    if path.is_dir() and not gelu:
        return _folder(name, path.resolve(), str(path.resolve()))
    if path.is_file():
        return _file(name, path, spec, gelu=gelu)
    if gelu or _looks_like_path(text):
        raise VlmeftError(f"weights file does not exist: {path}", where="--pretrained")
    return _tag(name, spec)
