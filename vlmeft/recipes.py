"""Two named training recipes per method: the paper's, and the embedded backbone's.

- ``paper``: the official repository's recipe. A method's ``Config`` dataclass
  defaults *are* this recipe, and its ``source`` names the config file they come
  from (repository, path, commit) plus the official training precision.
- ``embedded``: the calibrations chosen on val for the shipped synthclip-tiny, kept as
  overrides of the paper defaults. :data:`EMBEDDED_BASE` holds what every method
  shares (val selection, no augmentation, the project's original schedule, fp32); a
  method adds its own in ``Config.embedded``, next to its Config, and its module
  docstring gives the val evidence for each value.

A new method's author writes the paper recipe as Config defaults, cites it in
``source``, and declares one dict::

    @dataclass
    class Config(MethodConfig):
        '''... (configs/trainers/Foo/vit_b16.yaml of org/foo) ...'''

        lr: float = 0.002
        source: ClassVar[Source] = Source("org/foo", "configs/trainers/Foo/vit_b16.yaml", "abc1234", "fp16")
        embedded: ClassVar[dict[str, Any]] = {"lr": 0.05}  # val evidence: module notes

The default recipe depends on the backbone (:func:`default_recipe`): ``embedded`` on
synthclip-tiny and synthcoca-tiny with their shipped weights, ``paper`` everywhere else. This module never
imports torch (the CLI lists the recipes at start-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vlmeft.errors import VlmeftError

if TYPE_CHECKING:  # pragma: no cover
    from vlmeft.method import Method, MethodConfig

Recipe = Literal["paper", "embedded"]
RECIPES: tuple[Recipe, ...] = ("paper", "embedded")

# The backbone whose shipped weights the embedded recipe was calibrated on
# (== vlmeft.backbone.DEFAULT_BACKBONE, spelled out to stay torch-free).
EMBEDDED_BACKBONE = "synthclip-tiny"
_SHIPPED_WEIGHTS_PREFIX = "synthclip:"  # Backbone.weights_id of the shipped weights
# Every embedded backbone -> the weights_id prefix of its shipped weights: synthclip-tiny (the
# classification methods' calibrations) and synthcoca-tiny (the generative methods').
EMBEDDED_BACKBONES = {EMBEDDED_BACKBONE: _SHIPPED_WEIGHTS_PREFIX, "synthcoca-tiny": "synthcoca:"}

# What every method's embedded recipe shares: how the committed benchmark was run
# before the paper recipes existed. A method's ``Config.embedded`` adds to it.
EMBEDDED_BASE: dict[str, Any] = {
    "select": "val",  # keep the epoch with the best val accuracy
    "augment": False,  # the exact frozen-feature cache stays usable
    "text_template": "",  # the task's own template ensemble (paper recipes name their official prompt)
    "schedule": "legacy",  # the project's first cosine (one epoch ahead of Dassl's)
    "precision": "fp32",
}


@dataclass(frozen=True)
class Source:
    """Where a paper recipe comes from. ``repo`` and ``path`` are empty where no official
    code exists; ``note`` then gives the paper's table or section."""

    repo: str  # "KaiyangZhou/CoOp"
    path: str  # the config file (or script) holding the values
    commit: str  # the commit the values were read at (short hash)
    precision: str  # the official training precision: "fp16", "amp" or "fp32"
    note: str = ""

    @property
    def label(self) -> str:
        """One line for people: ``org/repo path @ commit``."""
        if not self.repo:
            return self.note or "no official code"
        where = f"{self.repo} {self.path}".strip()
        return f"{where} @ {self.commit}" if self.commit else where

    @property
    def url(self) -> str:
        """The file on GitHub at the commit it was read at ('' without a repository)."""
        if not self.repo:
            return ""
        ref = self.commit or "HEAD"
        return f"https://github.com/{self.repo}/blob/{ref}/{self.path}" if self.path else f"https://github.com/{self.repo}"


def check_recipe(name: str, where: str = "--recipe") -> Recipe:
    """``name`` if it is a recipe, else a one-line error listing them."""
    if name not in RECIPES:
        raise VlmeftError(f"unknown recipe '{name}'; recipes: {', '.join(RECIPES)}", where=where)
    return name  # type: ignore[return-value]


def default_recipe(backbone: Any) -> Recipe:
    """``embedded`` on synthclip-tiny with its shipped weights, ``paper`` on every other
    backbone. ``backbone`` is a :class:`~vlmeft.backbone.wrapper.Backbone` or a model name
    (a name alone stands for its default weights)."""
    if isinstance(backbone, str):
        return "embedded" if backbone in EMBEDDED_BACKBONES else "paper"
    prefix = EMBEDDED_BACKBONES.get(getattr(backbone, "name", None) or "")
    shipped = prefix is not None and str(getattr(backbone, "weights_id", "")).startswith(prefix)
    return "embedded" if shipped else "paper"


def recipe_values(config_cls: type[MethodConfig], recipe: str) -> dict[str, Any]:
    """The settings ``recipe`` changes from the paper defaults of ``config_cls``."""
    if check_recipe(recipe) == "paper":
        return {}
    own: Mapping[str, Any] = getattr(config_cls, "embedded", {}) or {}
    return {**EMBEDDED_BASE, **own}


def config_for(method_cls: type[Method], recipe: str, overrides: Mapping[str, Any] | None = None) -> MethodConfig:
    """``method_cls``'s config under ``recipe``, then ``overrides`` (``--set`` strings or
    values) on top; a bad key or value raises a one-line :class:`VlmeftError`."""
    import dataclasses

    config_cls = method_cls.Config
    values = recipe_values(config_cls, recipe)
    fields = set(config_cls.field_types())
    unknown = sorted(set(values) - fields)
    if unknown:  # a declaration error in the method module, not user input
        raise RuntimeError(f"{config_cls.__module__}: {recipe} recipe sets unknown field(s) {', '.join(unknown)}")
    config = dataclasses.replace(config_cls(), **values)
    return config.apply_overrides(dict(overrides or {}))


# The training settings a recipe table always shows for a method that trains.
CORE_FIELDS = ("optimizer", "lr", "batch_size", "epochs", "warmup_epochs", "schedule", "augment", "select")


def recipe_table(config_cls: type[MethodConfig], core: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """``(field, paper value, embedded value)`` for the ``core`` fields and every field the
    two recipes set differently, in field order (what the site's Recipes table shows)."""
    paper = config_cls().to_dict()
    embedded = {**paper, **recipe_values(config_cls, "embedded")}
    return [(k, paper[k], embedded[k]) for k in paper if k in core or paper[k] != embedded[k]]
