"""The method registry: every method registers itself, and is found without importing it.

A method module under ``methods/`` registers its class with a decorator::

    from vlmeft import registry

    @registry.register(reference_for="prompt.textual.learnable")  # or plain @registry.register
    class CoOp(Method):
        name = "coop"
        category = "prompt.textual.learnable"

Ids equal knowledge-base record ids. Listing and validating ids never imports torch or
runs method code: the registry *reads* ``methods/**/*.py`` with :mod:`ast` (once per
process) and finds every class decorated with :func:`register`, its literal ``name``,
its ``category`` (from the class or a base class it inherits from) and the leaf it is the
reference implementation of (``reference_for``). :func:`get` imports a module only then,
and checks that the decorator really registered that class under that id.

Third-party methods register through the ``vlmeft.methods`` entry-point group (entry
name = id, value = ``module:Class``); listing them reads package metadata only.
A knowledge-base record may only link to a registered id, which is how nothing in a
record is ever imported or executed.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmeft.errors import VlmeftError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping, Sequence

    from vlmeft.backbone.wrapper import Backbone
    from vlmeft.method import Method

PACKAGE = "vlmeft.methods"
ENTRY_POINT_GROUP = "vlmeft.methods"
BUILTIN = "builtin"
IN_PROCESS = "in-process"
_DECORATORS = {"register", "registry.register", "vlmeft.registry.register"}
_ID_RX = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # == vlmeft.kb.schema.ID_PATTERN (tested)


class RegistryError(VlmeftError):
    """A method module or entry point that cannot be registered as written."""


@dataclass(frozen=True)
class Entry:
    """One registered id, as known before anything is imported."""

    id: str
    module: str  # importable module path
    class_name: str
    category: str | None  # the declared category; None when only an import can tell (entry points)
    reference_for: str | None = None  # the taxonomy leaf this is the reference implementation of
    origin: str = BUILTIN  # builtin | in-process | "entry point of <distribution>"
    path: str | None = None  # the source file (builtin), for messages
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.path else f"{self.module}:{self.class_name}"


# ---------------------------------------------------------------------- runtime
_LOADED: dict[str, type] = {}  # id -> class, filled by @register as modules are imported
_EXTRA: dict[str, type] = {}  # in-process registrations (see `registered`)


def register(cls: type | None = None, /, *, reference_for: str | None = None) -> Any:
    """Class decorator: register a :class:`~vlmeft.method.Method` subclass under its ``name``.

    ``reference_for``: the taxonomy leaf whose reference implementation this is (records
    of that leaf without code of their own run it, fidelity ``category-reference``)."""

    def decorate(klass: type) -> type:
        name = klass.__dict__.get("name")
        if not isinstance(name, str) or not _ID_RX.match(name):
            raise RegistryError(f"@register needs a kebab-case `name = \"...\"` on {klass.__qualname__} itself",
                                where=klass.__module__)
        if reference_for is not None and reference_for != getattr(klass, "category", None):
            raise RegistryError(f"{klass.__qualname__} is the reference for '{reference_for}' but its category is "
                                f"'{getattr(klass, 'category', None)}'", where=klass.__module__)
        previous = _LOADED.get(name)
        if previous is not None and _qualified(previous) != _qualified(klass):  # a reload re-registers
            raise RegistryError(f"id '{name}' is registered twice: {_qualified(previous)} and {_qualified(klass)}")
        _LOADED[name] = klass
        return klass

    return decorate(cls) if cls is not None else decorate


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@contextlib.contextmanager
def registered(*classes: type) -> Iterator[None]:
    """Register ``classes`` in this process for the duration of a ``with`` block (tests:
    conformance mutants, which must never ship in ``methods/``)."""
    added = []
    try:
        for cls in classes:
            name = cls.__dict__.get("name")
            if not isinstance(name, str) or name in entries():
                raise RegistryError(f"cannot register {cls.__qualname__} in-process under {name!r}")
            _EXTRA[name] = cls
            added.append(name)
            _reset_views()
        yield
    finally:
        for name in added:
            _EXTRA.pop(name, None)
        _reset_views()


# -------------------------------------------------------------------- discovery
def methods_root() -> Path:
    """The folder of the ``vlmeft.methods`` package (``methods/`` in a checkout)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)  # imports only the package's docstring __init__
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover (a broken install)
        raise RegistryError("the vlmeft.methods package is missing from this installation")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


@dataclass
class _Class:
    """What the source says about one class, before any import."""

    name: str
    line: int
    attrs: dict[str, str]  # literal string class attributes (name, category)
    bases: list[str]  # dotted names as written
    decorated: bool
    reference_for: str | None


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _parse_module(path: Path, module: str) -> tuple[dict[str, _Class], dict[str, tuple[str, str]]]:
    """Classes of one module and its ``from X import Y`` names (local -> (module, name))."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:
        raise RegistryError(f"syntax error: {err.msg}", where=f"{path}:{err.lineno}") from None
    classes: dict[str, _Class] = {}
    imports: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level <= len(package):
            source = ".".join([*package[: len(package) - node.level + 1], node.module or ""]) if node.level \
                else node.module or ""
            for alias in node.names:
                imports[alias.asname or alias.name] = (source.strip("."), alias.name)
        if not isinstance(node, ast.ClassDef):
            continue
        attrs: dict[str, str] = {}
        for stmt in node.body:
            target = value = None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign):
                target, value = stmt.target, stmt.value
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                attrs[target.id] = value.value
        decorated, reference = False, None
        for dec in node.decorator_list:
            if _dotted(dec) in _DECORATORS:
                decorated = True
                if isinstance(dec, ast.Call):
                    for kw in dec.keywords:
                        if kw.arg == "reference_for" and isinstance(kw.value, ast.Constant):
                            reference = kw.value.value
        classes[node.name] = _Class(node.name, node.lineno, attrs, [_dotted(b) for b in node.bases],
                                    decorated, reference)
    return classes, imports


def _scan_builtin(root: Path) -> dict[str, Entry]:
    modules: dict[str, tuple[Path, dict[str, _Class], dict[str, tuple[str, str]]]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if any(not (root.joinpath(*rel.parts[:i]) / "__init__.py").is_file() for i in range(1, len(rel.parts))):
            continue  # not inside a package: never importable as vlmeft.methods.*
        module = ".".join([PACKAGE, *parts])
        modules[module] = (path, *_parse_module(path, module))

    def attr(module: str, class_name: str, key: str, depth: int = 0) -> str | None:
        """A literal class attribute, looked up through base classes the source can see."""
        if depth > 10 or module not in modules:
            return None
        _, classes, imports = modules[module]
        info = classes.get(class_name)
        if info is None:
            return attr(*imports[class_name], key, depth + 1) if class_name in imports else None
        if key in info.attrs:
            return info.attrs[key]
        for base in info.bases:
            found = attr(module, base, key, depth + 1) if "." not in base else None
            if found is not None:
                return found
        return None

    found: dict[str, Entry] = {}
    references: dict[str, Entry] = {}
    for module, (path, classes, _) in modules.items():
        for info in classes.values():
            if not info.decorated:
                continue
            where = f"{path}:{info.line}"
            method_id = info.attrs.get("name")
            if method_id is None or not _ID_RX.match(method_id):
                raise RegistryError(f"class {info.name} is registered but sets no kebab-case `name = \"...\"` "
                                    "in its own body", where=where)
            entry = Entry(method_id, module, info.name, attr(module, info.name, "category"), info.reference_for,
                          BUILTIN, str(path), info.line)
            if method_id in found:
                raise RegistryError(f"id '{method_id}' is already registered at {found[method_id].where}", where=where)
            if entry.reference_for is not None:
                if entry.reference_for != entry.category:
                    raise RegistryError(f"reference_for='{entry.reference_for}' but the category is "
                                        f"'{entry.category}'", where=where)
                if entry.reference_for in references:
                    raise RegistryError(f"'{entry.reference_for}' already has a reference implementation: "
                                        f"{references[entry.reference_for].id} ({references[entry.reference_for].where})",
                                        where=where)
                references[entry.reference_for] = entry
            found[method_id] = entry
    return found


_PROBLEMS: list[str] = []


def _scan_entry_points(builtin: dict[str, Entry]) -> dict[str, Entry]:
    """Installed third-party methods (package metadata only: nothing is imported)."""
    from importlib.metadata import entry_points

    found: dict[str, Entry] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
        where = f"entry point '{ep.name} = {ep.value}' of {dist}"
        module, _, class_name = ep.value.partition(":")
        if not _ID_RX.match(ep.name):
            _PROBLEMS.append(f"{where}: the name must be a kebab-case method id; ignored")
        elif ep.name in builtin or ep.name in found:
            _PROBLEMS.append(f"{where}: id '{ep.name}' is already registered; ignored")
        elif not module or not class_name or "." in class_name or ep.extras:
            _PROBLEMS.append(f"{where}: the value must be 'module:Class'; ignored")
        else:
            found[ep.name] = Entry(ep.name, module.strip(), class_name.strip(), None, None, f"entry point of {dist}")
    return found


_ENTRIES: dict[str, Entry] | None = None
_VIEWS: dict[str, Any] = {}


def _reset_views() -> None:
    _VIEWS.clear()


def refresh() -> None:
    """Forget what discovery found (tests; a process normally discovers once)."""
    global _ENTRIES
    _ENTRIES = None
    _PROBLEMS.clear()
    _reset_views()


def entries() -> dict[str, Entry]:
    """Every registered id -> its :class:`Entry`: built-in modules, in-process registrations
    and installed entry points. Discovered once per process, without importing anything."""
    global _ENTRIES
    if _ENTRIES is None:
        builtin = _scan_builtin(methods_root())
        _ENTRIES = {**builtin, **_scan_entry_points(builtin)}
    if not _EXTRA:
        return _ENTRIES
    return {**_ENTRIES, **{n: Entry(n, c.__module__, c.__qualname__, getattr(c, "category", None), None, IN_PROCESS)
                           for n, c in _EXTRA.items()}}


def problems() -> list[str]:
    """Entry points that were ignored, and why (``vlmeft methods`` prints them)."""
    entries()
    return list(_PROBLEMS)


def __getattr__(name: str) -> Any:
    if name == "CATEGORY_REFERENCE":  # leaf id -> reference implementation id, declared by the methods
        return category_references()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def category_references() -> dict[str, str]:
    """Leaf id -> the registry id declared ``@register(reference_for=leaf)``."""
    if "references" not in _VIEWS:
        _VIEWS["references"] = {e.reference_for: e.id for e in entries().values() if e.reference_for}
    return _VIEWS["references"]


# ------------------------------------------------------------------------ lookups
def names() -> list[str]:
    """All registered ids, sorted."""
    return sorted(entries())


def is_registered(name: str) -> bool:
    return name in entries()


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.4)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def entry(name: str) -> Entry:
    found = entries().get(name)
    if found is None:
        raise VlmeftError(f"unknown method '{name}'{suggest(name)}; known: {', '.join(names())}")
    return found


def location(name: str) -> tuple[str, str] | None:
    """``(module under vlmeft.methods, class name)`` of a built-in id, or None; lets the
    docs read a method's source without importing it."""
    found = entries().get(name)
    if found is None or found.origin != BUILTIN:
        return None
    return found.module.removeprefix(PACKAGE + "."), found.class_name


def get(name: str) -> type[Method]:
    """The method class registered as ``name``. A module that fails to import raises
    (never a silent skip); so does one whose decorator registered something else."""
    found = entry(name)
    if found.origin == IN_PROCESS:
        cls = _EXTRA[name]
    elif found.origin == BUILTIN:
        importlib.import_module(found.module)
        cls = _LOADED.get(name)
        if cls is None or (cls.__module__, cls.__qualname__) != (found.module, found.class_name):
            got = _qualified(cls) if cls is not None else "nothing"
            raise RegistryError(f"importing {found.module} registered {got} as '{name}', not {found.class_name}",
                                where=found.where)
    else:
        cls = _load_entry_point(found)
    _verify(found, cls)
    return cls


def _load_entry_point(found: Entry) -> type:
    where = f"{found.origin}: {found.module}:{found.class_name}"
    try:
        module = importlib.import_module(found.module)
        return getattr(module, found.class_name)
    except Exception as err:  # noqa: BLE001 (a broken plugin is reported in one line, not a traceback)
        raise RegistryError(f"third-party method '{found.id}' failed to load: {type(err).__name__}: {err}",
                            where=where) from None


def _verify(found: Entry, cls: Any) -> None:
    from vlmeft.method import Method

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"'{found.id}' is not a vlmeft.method.Method subclass", where=found.where)
    if cls.__dict__.get("name") != found.id:
        raise RegistryError(f"{cls.__qualname__}.name is {cls.__dict__.get('name')!r}, registered as '{found.id}'",
                            where=found.where)
    category = getattr(cls, "category", None)
    if not isinstance(category, str) or (found.category is not None and category != found.category):
        raise RegistryError(f"{cls.__qualname__}.category is {category!r}, the source declares {found.category!r}",
                            where=found.where)


def category(name: str) -> str | None:
    """The declared category of ``name`` (the taxonomy leaf, or None for a baseline),
    imported only for entry points (whose source the registry does not read)."""
    found = entry(name)
    declared = found.category if found.category is not None else get(name).category
    return None if declared == "baseline" else declared


def names_without_vision_tokens() -> list[str]:
    """Registered ids that run on any image tower (ResNet included)."""
    return [name for name in names() if not get(name).requires_vision_tokens]


def build(
    name: str,
    backbone: Backbone,
    classnames: Sequence[str],
    templates: Sequence[str],
    overrides: Mapping[str, object] | None = None,
    *,
    seed: int | None = None,
    recipe: str | None = None,
) -> Method:
    """Build method ``name`` under ``recipe`` (``paper`` or ``embedded``; None: the
    backbone's default, see :mod:`vlmeft.recipes`) plus ``overrides`` (``--set``).
    With ``seed``, parameter initialisation draws from a local seeded RNG."""
    import torch

    from vlmeft.recipes import config_for, default_recipe

    cls = get(name)
    recipe = recipe or default_recipe(backbone)
    config = config_for(cls, recipe, overrides)
    devices = [backbone.device] if backbone.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        method = cls(backbone, classnames, templates, config)
    method.recipe = recipe
    return method
