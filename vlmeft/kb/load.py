"""Loading the knowledge base: safe YAML -> schema -> cross-record checks.

Two modes share one code path:
- :func:`load_kb` is for normal use (site generator, CLI, conformance): it raises the
  first problem as a :class:`VlmeftError`.
- :func:`check_kb` is for ``vlmeft validate``: it collects every problem it can find
  (each one a ``VlmeftError`` naming file:line and field) and returns them all, so an
  author fixes a file in one round. A file that fails to parse or validate is left out of
  the cross-record checks, so one mistake is reported once, not once per consequence.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vlmeft import registry
from vlmeft.errors import VlmeftError
from vlmeft.kb.safe_yaml import YamlDocument, display_path, load_yaml_document, safe_load_yaml
from vlmeft.kb.schema import (
    CategoriesFile,
    ChangelogFile,
    Family,
    KbMeta,
    Leaf,
    MethodRecord,
    Paradigm,
    ParadigmsFile,
    SurveyRecord,
    Task,
    TasksFile,
    Topic,
    TopicsFile,
    TypeNode,
    VocabFile,
)

__all__ = [
    "CategoryTree",
    "KnowledgeBase",
    "check_kb",
    "load_kb",
    "load_record",
    "safe_load_yaml",
    "shipped_dir",
]

M = TypeVar("M", bound=BaseModel)
Node = Family | TypeNode | Leaf


def shipped_dir() -> Path:
    """The knowledge base that ships with the package (``vlmeft.taxonomy``)."""
    return Path(str(files("vlmeft.taxonomy")))


# ---------------------------------------------------------------------------------------
# The loaded knowledge base
# ---------------------------------------------------------------------------------------


class CategoryTree:
    """The family -> type -> subtype tree, indexed by id."""

    def __init__(self, data: CategoriesFile) -> None:
        self.data = data
        self.families: list[Family] = list(data.families)
        self.types: list[TypeNode] = [t for f in self.families for t in f.types]
        self.leaves: list[Leaf | TypeNode] = [
            leaf for t in self.types for leaf in (t.subtypes if t.subtypes else [t])
        ]
        self.references = {r.id: r for r in data.references}
        self._nodes: dict[str, Node] = {}
        self._parent: dict[str, str | None] = {}
        for fam in self.families:
            self._nodes[fam.id], self._parent[fam.id] = fam, None
            for t in fam.types:
                self._nodes[t.id], self._parent[t.id] = t, fam.id
                for s in t.subtypes:
                    self._nodes[s.id], self._parent[s.id] = s, t.id

    @property
    def ids(self) -> list[str]:
        """Every node id, in tree order."""
        return list(self._nodes)

    @property
    def signature_keys(self) -> dict:
        """What each behavioural-signature key means and the values it takes."""
        return dict(self.data.signature_keys)

    @property
    def leaf_ids(self) -> list[str]:
        return [leaf.id for leaf in self.leaves]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def node(self, node_id: str) -> Node:
        if node_id not in self._nodes:
            raise VlmeftError(f"unknown category '{node_id}'{suggest(node_id, self.ids)}")
        return self._nodes[node_id]

    def leaf(self, node_id: str) -> Leaf | TypeNode:
        node = self.node(node_id)
        if not self.is_leaf(node_id):
            raise VlmeftError(f"category '{node_id}' is not a leaf; its leaves: {', '.join(self.leaves_under(node_id))}")
        return node  # type: ignore[return-value]

    def is_leaf(self, node_id: str) -> bool:
        return node_id in self._nodes and node_id in self.leaf_ids

    def parent(self, node_id: str) -> str | None:
        self.node(node_id)
        return self._parent[node_id]

    def children(self, node_id: str) -> list[Node]:
        node = self.node(node_id)
        if isinstance(node, Family):
            return list(node.types)
        if isinstance(node, TypeNode):
            return list(node.subtypes)
        return []

    def path(self, node_id: str) -> list[Node]:
        """Nodes from the family down to ``node_id``."""
        out: list[Node] = []
        current: str | None = node_id
        while current is not None:
            out.append(self.node(current))
            current = self._parent[current]
        return out[::-1]

    def leaves_under(self, node_id: str) -> list[str]:
        return [leaf for leaf in self.leaf_ids if is_under(leaf, node_id)]


def is_under(category: str | None, node_id: str) -> bool:
    """Whether ``category`` is ``node_id`` or lies below it (dotted-segment prefix)."""
    return bool(category) and (category == node_id or category.startswith(node_id + "."))  # type: ignore[union-attr]


class Vocabulary:
    """The controlled ids results use (``vocab.yaml``), indexed by kind."""

    KINDS = ("metrics", "protocols", "datasets", "backbones")

    def __init__(self, data: VocabFile) -> None:
        self.data = data
        self.metrics = {m.id: m for m in data.metrics}
        self.protocols = {p.id: p for p in data.protocols}
        self.datasets = {d.id: d for d in data.datasets}
        self.backbones = {b.id: b for b in data.backbones}

    def backbone_for_open_clip(self, name: str) -> str | None:
        """The backbone id whose open_clip model name is ``name`` (case-insensitive)."""
        folded = name.casefold()
        return next((b.id for b in self.backbones.values() if b.open_clip and b.open_clip.casefold() == folded), None)


@dataclass
class KnowledgeBase:
    """Everything under one taxonomy directory, validated."""

    root: Path
    survey: SurveyRecord
    categories: CategoryTree
    tasks: dict[str, Task]
    paradigms: dict[str, Paradigm]
    topics: dict[str, Topic]
    methods: dict[str, MethodRecord]  # sorted by id
    sources: dict[str, str] = field(default_factory=dict)  # record id -> file, as shown in messages
    vocab: Vocabulary | None = None  # vocab.yaml; None: results are free text (an old or fixture KB)
    meta: KbMeta | None = None  # kb.yaml: the knowledge base's own release
    changelog: ChangelogFile | None = None  # changelog.yaml

    @property
    def leaves(self) -> list[Leaf | TypeNode]:
        return self.categories.leaves

    def members(self, category_id: str) -> list[MethodRecord]:
        """Records whose primary category is ``category_id`` or a node below it."""
        self.categories.node(category_id)
        return [r for r in self.methods.values() if is_under(r.category, category_id)]

    def uncategorised(self) -> list[MethodRecord]:
        """Records with no category (the baselines)."""
        return [r for r in self.methods.values() if not r.category]

    def resolve(self, name: str) -> MethodRecord | None:
        """The record with id or alias ``name`` (case-insensitive), if any."""
        if name in self.methods:
            return self.methods[name]
        folded = name.strip().casefold()
        for record in self.methods.values():
            if record.id == folded or folded in (a.casefold() for a in record.aliases):
                return record
        return None

    def get(self, name: str) -> MethodRecord:
        """Like :meth:`resolve`, but an unknown name is an error that suggests near ids."""
        record = self.resolve(name)
        if record is None:
            owner = {i.casefold(): i for i in self.methods}
            owner.update({a.casefold(): r.id for r in self.methods.values() for a in r.aliases if a.casefold() not in owner})
            close = difflib.get_close_matches(name.casefold(), list(owner), n=6, cutoff=0.5)
            ids = list(dict.fromkeys(owner[c] for c in close))[:3]
            hint = f" (did you mean {', '.join(ids)}?)" if ids else ""
            raise VlmeftError(f"unknown method '{name}'{hint}; `vlmeft list` shows all ids")
        return record


def suggest(name: str, candidates: Iterable[str]) -> str:
    pool = list(dict.fromkeys(candidates))
    folded = {c.casefold(): c for c in pool}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(folded[c] for c in close)}?)" if close else ""


# ---------------------------------------------------------------------------------------
# Turning pydantic errors into one-line, located messages
# ---------------------------------------------------------------------------------------

MAX_REPORTED = 20  # schema errors listed per file
_FIELD_PREFIX = re.compile(r"^field '([A-Za-z_][A-Za-z0-9_.\[\]]*)': ")


def _data_path(data: Any, loc: tuple[Any, ...], *, name_absent_key: bool) -> tuple[str | int, ...]:
    """The part of a pydantic ``loc`` that addresses real keys/indices in ``data``.

    Other parts are union-branch tags (``'literal[...]'``, ``'bool'``) and are skipped;
    an absent key is kept only for "unknown key" / "missing field" errors.
    """
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif name_absent_key and isinstance(node, dict) and isinstance(part, str):
            out.append(part)
            break
        else:
            continue
        out.append(part)
    return tuple(out)


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _parse_dotted(text: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for name, index in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", text):
        out.append(name if name else int(index))
    return tuple(out)


def _message(err: dict[str, Any], allowed: list[str] | None) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        hint = suggest(key, allowed or [])
        return f"unknown key '{key}'{hint}" + (f"; allowed: {', '.join(allowed)}" if allowed and not hint else "")
    if kind == "missing":
        return "required field is missing"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind.endswith("_type") or kind in ("literal_error", "enum"):
        value = err.get("input")
        shown = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
        msg = f"{msg} (got {shown[:60]})"
    return msg


def _allowed_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str] | None:
    """Field names of the model that sits at ``path`` (for "unknown key" hints)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return list(fields) if fields else None
        current = _model_in(fields[part].annotation)
    return list(current.model_fields) if hasattr(current, "model_fields") else None


def _model_in(tp: Any) -> Any:
    """The BaseModel class inside an annotation like ``list[X] | None``, if any."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validation_errors(exc: ValidationError, doc: YamlDocument, model: type[BaseModel]) -> list[VlmeftError]:
    """One located ``VlmeftError`` per field problem (union branches merged), at most
    ``MAX_REPORTED`` fields plus one line counting the rest: a hostile file with 50,000
    unknown keys costs one screen, not 50,000 lines."""
    grouped: dict[tuple[str | int, ...], list[str]] = {}
    errors = exc.errors()
    left = 0
    for i, err in enumerate(errors):
        path = _data_path(doc.data, tuple(err["loc"]), name_absent_key=err["type"] in ("extra_forbidden", "missing"))
        if path not in grouped and len(grouped) >= MAX_REPORTED:
            left = len(errors) - i
            break
        msg = _message(err, _allowed_keys(model, path[:-1]) if err["type"] == "extra_forbidden" else None)
        m = _FIELD_PREFIX.match(msg)
        if m and not path:  # a record-level check that names its field
            path, msg = _parse_dotted(m.group(1)), msg[m.end():]
        grouped.setdefault(path, [])
        if msg not in grouped[path]:
            grouped[path].append(msg)
    out = []
    for path, msgs in grouped.items():
        where = doc.at(path) + (f" field '{_dotted(path)}'" if path else "")
        out.append(VlmeftError("; or ".join(msgs) if len(msgs) > 1 else msgs[0], where=where))
    if left:
        out.append(VlmeftError(f"{left} more schema error(s) not shown; fix the ones above first", where=doc.where))
    return out


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


class _Sink:
    """Where problems go: raised at once (``strict``) or collected."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.errors: list[VlmeftError] = []

    def add(self, err: VlmeftError) -> None:
        if self.strict:
            raise err
        self.errors.append(err)

    def extend(self, errs: Iterable[VlmeftError]) -> None:
        for err in errs:
            self.add(err)


def _parse_file(path: Path, model: type[M], sink: _Sink) -> tuple[M, YamlDocument] | None:
    try:
        doc = load_yaml_document(path)
    except VlmeftError as err:
        sink.add(err)
        return None
    if not isinstance(doc.data, dict):
        sink.add(VlmeftError(f"expected a mapping of fields at the top level, got {type(doc.data).__name__}", where=doc.at()))
        return None
    try:
        return model.model_validate(doc.data), doc
    except ValidationError as exc:
        sink.extend(validation_errors(exc, doc, model))
        return None


def load_record(path: Path | str) -> MethodRecord:
    """Parse and validate one record file on its own (no cross-record checks)."""
    parsed = _parse_file(Path(path), MethodRecord, _Sink(strict=True))
    assert parsed is not None  # strict mode raised otherwise
    return parsed[0]


@dataclass
class _Loaded:
    record: MethodRecord
    doc: YamlDocument
    path: Path


def _record_checks(item: _Loaded, kb: _Partial, sink: _Sink) -> None:
    """Checks of one record against the taxonomy, tasks, paradigms and registry."""
    rec, doc = item.record, item.doc
    if item.path.stem != rec.id:
        sink.add(VlmeftError(f"id '{rec.id}' must equal the file name stem '{item.path.stem}'", where=f"{doc.at(('id',))} field 'id'"))
    tree = kb.categories
    if tree is not None:
        for loc, cat in [(("category",), rec.category)] + [(("secondary_categories", i), c) for i, c in enumerate(rec.secondary_categories)]:
            if cat is None:
                continue
            if cat not in tree:
                sink.add(VlmeftError(f"unknown category '{cat}'{suggest(cat, tree.leaf_ids)}", where=f"{doc.at(loc)} field '{_dotted(loc)}'"))
            elif not tree.is_leaf(cat):
                sink.add(VlmeftError(
                    f"'{cat}' is not a leaf category; use one of {', '.join(tree.leaves_under(cat))}",
                    where=f"{doc.at(loc)} field '{_dotted(loc)}'",
                ))
    if kb.tasks is not None:
        for i, task in enumerate(rec.tasks):
            if task not in kb.tasks:
                sink.add(VlmeftError(f"unknown task '{task}'{suggest(task, kb.tasks)}", where=f"{doc.at(('tasks', i))} field 'tasks[{i}]'"))
    if kb.paradigms is not None:
        paradigm = kb.paradigms.get(rec.paradigm)
        where = f"{doc.at(('paradigm',))} field 'paradigm'"
        if paradigm is None:
            sink.add(VlmeftError(f"unknown paradigm '{rec.paradigm}'{suggest(rec.paradigm, kb.paradigms)}", where=where))
        elif paradigm.family is None and rec.category:
            sink.add(VlmeftError(f"paradigm '{rec.paradigm}' is a baseline paradigm: its records carry no category", where=where))
        elif paradigm.family is not None and not is_under(rec.category, paradigm.family):
            got = f"'{rec.category}'" if rec.category else "none"
            sink.add(VlmeftError(f"paradigm '{rec.paradigm}' needs a category under '{paradigm.family}', got {got}", where=where))
    if kb.vocab is not None:
        _vocab_checks(rec, doc, kb.vocab, sink)
    for i, note in enumerate(rec.classification_notes):
        loc = ("classification_notes", i, "alternative")
        alt = note.alternative
        if tree is not None and alt != "baseline" and alt not in tree:
            sink.add(VlmeftError(f"unknown category '{alt}'{suggest(alt, tree.ids)}", where=f"{doc.at(loc)} field '{_dotted(loc)}'"))
        elif alt == (rec.category or "baseline"):
            sink.add(VlmeftError("the alternative is the record's own category", where=f"{doc.at(loc)} field '{_dotted(loc)}'"))
        if tree is not None:
            for j, who in enumerate(note.held_by):
                if who not in tree.references and who not in kb.record_ids:
                    loc = ("classification_notes", i, "held_by", j)
                    sink.add(VlmeftError(
                        f"'{who}' is neither a reference in categories.yaml nor a record id{suggest(who, [*tree.references, *kb.record_ids])}",
                        where=f"{doc.at(loc)} field '{_dotted(loc)}'"))
    if rec.variant_of is not None and kb.record_ids and rec.variant_of not in kb.record_ids:
        sink.add(VlmeftError(f"unknown record '{rec.variant_of}'{suggest(rec.variant_of, kb.record_ids)}",
                             where=f"{doc.at(('variant_of',))} field 'variant_of'"))
    impl = rec.implementation
    if (impl is not None and impl.fidelity == "category-reference" and tree is not None and rec.category in tree
            and rec.category not in registry.CATEGORY_REFERENCE):
        sink.add(VlmeftError(
            f"category '{rec.category}' has no reference implementation (vlmeft.registry.CATEGORY_REFERENCE)",
            where=f"{doc.at(('implementation', 'fidelity'))} field 'implementation.fidelity'",
        ))
    category_known = not rec.category or (tree is not None and tree.is_leaf(rec.category))
    if impl is not None and impl.fidelity != "category-reference" and category_known:
        folder = _implementation_folder(impl.id)
        expected = rec.category.replace(".", "_") if rec.category else "baseline"
        if folder is not None and folder != expected:
            sink.add(VlmeftError(
                f"'{impl.id}' is implemented under methods/{folder}/, not the record's category folder methods/{expected}/",
                where=f"{doc.at(('implementation', 'id'))} field 'implementation.id'",
            ))


def _vocab_checks(rec: MethodRecord, doc: YamlDocument, vocab: Vocabulary, sink: _Sink) -> None:
    """Every result names its metric, dataset, protocol and backbone by a vocabulary id,
    with ``shots`` where the protocol needs it and never where it forbids it."""
    for i, res in enumerate(rec.results):
        for name, table in (("metric", vocab.metrics), ("dataset", vocab.datasets),
                            ("protocol", vocab.protocols), ("backbone", vocab.backbones)):
            value = getattr(res, name)
            loc = ("results", i, name)
            if value is None:
                if name in ("protocol", "backbone"):
                    sink.add(VlmeftError(f"required: a {name} id from vocab.yaml", where=f"{doc.at(('results', i))} field '{_dotted(loc)}'"))
                continue
            if value not in table:
                sink.add(VlmeftError(f"unknown {name} '{value}'{suggest(value, table)}; the ids are in vocab.yaml",
                                     where=f"{doc.at(loc)} field '{_dotted(loc)}'"))
        protocol = vocab.protocols.get(res.protocol or "")
        if protocol is None:
            continue
        if protocol.shots == "required" and res.shots is None:
            sink.add(VlmeftError(f"protocol '{protocol.id}' needs 'shots' (labelled images per class)",
                                 where=f"{doc.at(('results', i))} field 'results[{i}].shots'"))
        if protocol.shots == "forbidden" and res.shots is not None:
            sink.add(VlmeftError(f"protocol '{protocol.id}' uses no labelled shots; remove 'shots'",
                                 where=f"{doc.at(('results', i, 'shots'))} field 'results[{i}].shots'"))


def _implementation_folder(method_id: str) -> str | None:
    """The methods/ sub-folder that holds ``method_id`` (from the registry's static table)."""
    entry = registry.location(method_id)
    return entry[0].split(".", 1)[0] if entry else None


def _norm_arxiv(arxiv: str) -> str:
    return re.sub(r"v\d+$", "", arxiv)


def _cross_checks(items: list[_Loaded], sink: _Sink) -> None:
    """Checks across records: unique ids and aliases, one paper per arXiv id / DOI."""
    names: dict[str, tuple[str, _Loaded]] = {}  # casefolded id/alias -> (what, owner)
    for item in items:
        rec = item.record
        entries = [(rec.id, ("id",), "id")] + [(a, ("aliases", i), "alias") for i, a in enumerate(rec.aliases)]
        for name, loc, what in entries:
            key = name.casefold()
            other = names.get(key)
            if other is not None and other[1] is not item:
                sink.add(VlmeftError(
                    f"duplicate {what} '{name}': already the {other[0]} of '{other[1].record.id}' ({other[1].doc.where})",
                    where=f"{item.doc.at(loc)} field '{_dotted(loc)}'",
                ))
            else:
                names.setdefault(key, (what, item))
    for attr, norm in (("arxiv", _norm_arxiv), ("doi", str.casefold)):
        seen: dict[str, _Loaded] = {}
        for item in items:
            value = getattr(item.record, attr)
            if not value:
                continue
            other = seen.get(norm(value))
            # Two records may cite one paper (a method and its variant defined in the same
            # paper) only when they agree on the title: a mismatch means a pasted id.
            if other is not None and other.record.title.casefold() != item.record.title.casefold():
                sink.add(VlmeftError(
                    f"{attr} {value} is already used by '{other.record.id}' ({other.doc.where}) for a different title; "
                    "records that share a paper must give its exact title",
                    where=f"{item.doc.at((attr,))} field '{attr}'",
                ))
            seen.setdefault(norm(value), item)


@dataclass
class _Partial:
    categories: CategoryTree | None = None
    tasks: dict[str, Task] | None = None
    paradigms: dict[str, Paradigm] | None = None
    topics: dict[str, Topic] | None = None
    survey: SurveyRecord | None = None
    vocab: Vocabulary | None = None
    meta: KbMeta | None = None
    changelog: ChangelogFile | None = None
    record_ids: set[str] = field(default_factory=set)  # every parsed record's id (for variant_of)


def _load_base(root: Path, sink: _Sink) -> _Partial:
    part = _Partial()
    parsed = _parse_file(root / "categories.yaml", CategoriesFile, sink)
    if parsed:
        part.categories = CategoryTree(parsed[0])
    for name, model, attr, key in (
        ("tasks.yaml", TasksFile, "tasks", "tasks"),
        ("paradigms.yaml", ParadigmsFile, "paradigms", "paradigms"),
        ("topics.yaml", TopicsFile, "topics", "topics"),
    ):
        path = root / name
        if name == "topics.yaml" and not path.exists():
            part.topics = {}
            continue
        got = _parse_file(path, model, sink)
        if got:
            entries = getattr(got[0], key)
            ids = [e.id for e in entries]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                sink.add(VlmeftError(f"duplicate id(s): {', '.join(dupes)}", where=got[1].at((key,))))
            setattr(part, attr, {e.id: e for e in entries})
    if part.paradigms is not None and part.categories is not None:
        for p in part.paradigms.values():
            if p.family is not None and p.family not in [f.id for f in part.categories.families]:
                sink.add(VlmeftError(f"paradigm '{p.id}' names unknown family '{p.family}'", where=display_path(root / "paradigms.yaml")))
    got_survey = _parse_file(root / "survey.yaml", SurveyRecord, sink)
    if got_survey:
        part.survey = got_survey[0]
    # Optional files: a knowledge base without them has free-text results, no release
    # metadata and no changelog (older and fixture KBs).
    if (root / "vocab.yaml").exists() and (got := _parse_file(root / "vocab.yaml", VocabFile, sink)):
        part.vocab = Vocabulary(got[0])
    if (root / "kb.yaml").exists() and (got_meta := _parse_file(root / "kb.yaml", KbMeta, sink)):
        part.meta = got_meta[0]
    if (root / "changelog.yaml").exists() and (got_log := _parse_file(root / "changelog.yaml", ChangelogFile, sink)):
        part.changelog = got_log[0]
    return part


def _record_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def _load(root: Path, extra: Iterable[Path], sink: _Sink, *, rules: bool = False) -> KnowledgeBase | None:
    if not root.is_dir():
        sink.add(VlmeftError("taxonomy directory not found", where=str(root)))
        return None
    part = _load_base(root, sink)
    shipped_files = _record_files(root / "methods")
    resolved = {p.resolve() for p in shipped_files}
    files_ = shipped_files + [p for p in extra if p.resolve() not in resolved]
    items: list[_Loaded] = []
    for path in files_:
        parsed = _parse_file(path, MethodRecord, sink)
        if parsed:
            items.append(_Loaded(parsed[0], parsed[1], path))
    part.record_ids = {it.record.id for it in items}
    for item in items:
        _record_checks(item, part, sink)
    _cross_checks(items, sink)
    # The rules hold a knowledge base that publishes releases (it has kb.yaml): the shipped one, and
    # any record validated against it. Scratch and fixture KBs without kb.yaml keep schema checks only.
    if rules and part.categories is not None and part.meta is not None:
        from vlmeft.kb.rules import check_rules

        sink.extend(check_rules([(it.record, it.doc) for it in items], part, root))
    if part.categories is None or part.tasks is None or part.paradigms is None or part.survey is None:
        return None  # only reachable when collecting: the errors say why
    methods = {}
    for item in sorted(items, key=lambda it: it.record.id):
        methods.setdefault(item.record.id, item.record)
    return KnowledgeBase(
        root=root,
        survey=part.survey,
        categories=part.categories,
        tasks=part.tasks,
        paradigms=part.paradigms,
        topics=part.topics or {},
        methods=methods,
        sources={it.record.id: it.doc.where for it in items if methods.get(it.record.id) is it.record},
        vocab=part.vocab,
        meta=part.meta,
        changelog=part.changelog,
    )


def load_kb(taxonomy_dir: Path | str | None = None) -> KnowledgeBase:
    """Load and check a knowledge base (None: the shipped one); raise the first problem."""
    root = Path(taxonomy_dir) if taxonomy_dir is not None else shipped_dir()
    kb = _load(root, (), _Sink(strict=True))
    assert kb is not None
    return kb


def check_kb(
    taxonomy_dir: Path | str | None = None, extra_files: Iterable[Path | str] = (), *, rules: bool = True
) -> tuple[KnowledgeBase | None, list[VlmeftError]]:
    """Collect every problem in a knowledge base, plus ``extra_files`` (record files
    checked as if they were added to it). Returns the KB (None if a base file failed).

    ``rules``: also hold every record to the knowledge-base rules (:mod:`vlmeft.kb.rules`:
    sources, venues, shared code, aliases, ...), as ``vlmeft validate`` does, when the knowledge
    base publishes releases (has ``kb.yaml``)."""
    root = Path(taxonomy_dir) if taxonomy_dir is not None else shipped_dir()
    sink = _Sink(strict=False)
    kb = _load(root, [Path(p) for p in extra_files], sink, rules=rules)
    return kb, sink.errors


def iter_record_files(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Expand files and folders of record files (``*.yaml``) given on the command line."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _record_files(path)
        else:
            yield path
