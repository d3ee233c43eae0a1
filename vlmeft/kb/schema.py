"""The knowledge base's data model (pydantic v2): method records, the category tree,
the survey's own record, tasks, paradigms and topic pages.

Every model forbids unknown keys. Text fields refuse control characters and Unicode
bidirectional controls (which can make a title display differently from what it says);
links must be https; ids are kebab-case and so can never traverse a path. Checks that
need more than one file (unknown category, duplicate ids, ...) live in :mod:`vlmeft.kb.load`.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from vlmeft import registry

MIN_YEAR = 1990
MAX_YEAR = datetime.date.today().year + 1
MAX_LIST = 500  # entries per list field: bounds the work (and the error count) of a hostile record

# ---------------------------------------------------------------------------------------
# Text and identifier types
# ---------------------------------------------------------------------------------------

# Bidirectional-text controls (embeddings, overrides, isolates, marks): they reorder how
# text is shown without changing what it is ("Trojan Source"), so no field may hold one.
_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _bad_char(text: str, *, multiline: bool) -> str | None:
    for ch in text:
        cp = ord(ch)
        if cp in _BIDI:
            return f"bidirectional control character U+{cp:04X} is not allowed"
        if ch in "\n\t" and multiline:
            continue
        if cp < 0x20 or 0x7F <= cp <= 0x9F or cp in (0x2028, 0x2029):
            what = "line break" if ch in "\n\r\u2028\u2029" else "control character"
            return f"{what} U+{cp:04X} is not allowed here"
    return None


def _line(text: str) -> str:
    problem = _bad_char(text, multiline=False)
    if problem:
        raise ValueError(problem)
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _para(text: str) -> str:
    problem = _bad_char(text, multiline=True)
    if problem:
        raise ValueError(problem)
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


Line = Annotated[StrictStr, AfterValidator(_line), Field(max_length=500)]
"""One line of text."""
Para = Annotated[StrictStr, AfterValidator(_para), Field(max_length=20_000)]
"""Prose; may span lines."""


def _pattern_type(pattern: str, describe: str, example: str) -> Any:
    """A string type checked against ``pattern`` with a message a record author can act on."""
    rx = re.compile(pattern)

    def check(value: str) -> str:
        if not rx.fullmatch(value):
            raise ValueError(f"{value!r} is not {describe} (e.g. {example})")
        return value

    return Annotated[
        StrictStr,
        AfterValidator(check),
        WithJsonSchema({"type": "string", "pattern": pattern, "description": describe}),
    ]


ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
CATEGORY_PATTERN = r"^[a-z]+(?:-[a-z]+)*(?:\.[a-z]+(?:-[a-z]+)*)*$"
ARXIV_PATTERN = r"^[0-9]{2}(?:0[1-9]|1[0-2])\.[0-9]{4,5}(?:v[1-9][0-9]*)?$"
DOI_PATTERN = r"^10\.[0-9]{4,9}/[-._;()/:A-Za-z0-9<>\[\]]+$"
ARXIV_CLASS_PATTERN = r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Z]{2})?$"

Id = Annotated[_pattern_type(ID_PATTERN, "a kebab-case id", "tip-adapter-f"), Field(max_length=64)]
CategoryId = Annotated[_pattern_type(CATEGORY_PATTERN, "a dotted category id", "prompt.visual.token"), Field(max_length=80)]
ArxivClass = _pattern_type(ARXIV_CLASS_PATTERN, "an arXiv subject class", "cs.CV")


def _quoted_number_hint(what: str, example: str):  # noqa: ANN202
    def check(value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"{what} must be a quoted string (write \"{example}\"): unquoted, YAML reads it as a number")
        return value

    return BeforeValidator(check)


ArxivId = Annotated[
    _pattern_type(ARXIV_PATTERN, "an arXiv id (YYMM.NNNNN, optional vN)", "2109.01134"),
    _quoted_number_hint("an arXiv id", "2109.01134"),
]


def _doi(value: str) -> str:
    if value.lower().startswith(("http://", "https://", "doi:")):
        raise ValueError("give the bare DOI (10.xxxx/...), without a https://doi.org/ or doi: prefix")
    return value


Doi = Annotated[_pattern_type(DOI_PATTERN, "a DOI", "10.1016/j.cag.2024.01.012"), AfterValidator(_doi)]

_URL_RX = re.compile(r"^https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[^\s\"'<>\\{}|^`]*)?$")
_SCHEME_RX = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*):")
_DANGEROUS_SCHEMES = {"javascript", "data", "file", "vbscript", "blob", "about", "filesystem"}


def _https_url(value: str) -> str:
    scheme = _SCHEME_RX.match(value)
    if scheme and scheme.group(1).lower() != "https":
        raise ValueError(f"only https:// links are allowed, not {scheme.group(1).lower()}:")
    if not _URL_RX.fullmatch(value):
        raise ValueError(f"{value!r} is not an https URL (no spaces, quotes, braces or backslashes)")
    return value


HttpsUrl = Annotated[
    StrictStr,
    AfterValidator(_https_url),
    Field(max_length=2000),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https://"}),
]


def _source(value: str) -> str:
    """A result's source: an https link, or a short text reference ("Table 2 of the paper")."""
    scheme = _SCHEME_RX.match(value)
    if scheme and (scheme.group(1).lower() in _DANGEROUS_SCHEMES or "://" in value[:40]):
        return _https_url(value)
    return _line(value)


Source = Annotated[StrictStr, AfterValidator(_source), Field(max_length=2000)]


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):  # .nan / .inf would reach tables and plots as if measured
        raise ValueError("must be a finite number")
    return float(value)


Number = Annotated[float, BeforeValidator(_number)]


def _person(value: str) -> str:
    value = _line(value)
    if "et al" in value.lower():
        raise ValueError("list every author; 'et al.' is not a name")
    if value.count(",") > 1 or " and " in value:
        raise ValueError(f"{value!r} looks like several names; give one author per list item")
    return value


Person = Annotated[StrictStr, AfterValidator(_person), Field(max_length=200)]
"""An author: "Given Family", or "Family, Given" where the family name has several words."""


class Strict(BaseModel):
    """Base for every model: unknown keys are errors; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------
# Method records (taxonomy/methods/<id>.yaml)
# ---------------------------------------------------------------------------------------

VenueType = Literal["journal", "conference", "workshop", "preprint"]
Fidelity = Literal["faithful", "simplified", "category-reference"]
Modality = Literal["text", "image"]


class Parameters(Strict):
    """Trainable parameters, for one stated setting."""

    count: Annotated[StrictInt, Field(ge=0)] | None = None
    backbone: Line | None = None
    note: Para | None = None


class Result(Strict):
    """One reported result and where it was read.

    ``metric``, ``dataset``, ``protocol`` and ``backbone`` are ids from the knowledge base's
    vocabulary (``taxonomy/vocab.yaml``) when it has one; the loader checks them there.
    """

    metric: Line
    value: Number
    dataset: Line
    protocol: Line | None = None
    shots: Annotated[StrictInt, Field(ge=0, le=100_000)] | None = None  # labelled images per class
    backbone: Line | None = None
    setting: Line | None = None  # which configuration of the method, when a source reports several
    source: Source
    locator: Line | None = None  # where in the source: "Table 1", "README, base-to-novel table", "exp.log"
    # The value is kept as the source prints it although it disagrees with the source's other numbers
    # (e.g. an HM that is not the harmonic mean of the base and novel averages): why.
    discrepancy: Para | None = None
    note: Para | None = None


class Implementation(Strict):
    """The link to runnable code: a registry id, never an import path."""

    id: Id
    fidelity: Fidelity

    @field_validator("id")
    @classmethod
    def _registered(cls, value: str) -> str:
        if not registry.is_registered(value):
            raise ValueError(f"'{value}' is not a registered method{registry.suggest(value)}")
        return value


_UNVERIFIED_RX = re.compile(r"^([a-z_]+)(?:\[([0-9]+)\])?(?:\.[a-z_]+)?$")

# Where a fact was checked. Each kind says what the URL must be (vlmeft.kb.rules checks it):
SourceKind = Literal[
    "arxiv",                # the arXiv abstract or HTML page of the record's arXiv id
    "proceedings",          # the venue's own page: CVF open access, NeurIPS/ICML/ACL/AAAI proceedings, OpenReview
    "publisher",            # the publisher's page or the DOI resolver (journals)
    "index",                # a bibliographic index that copies the publisher's metadata (DOAJ, dblp, Crossref)
    "official-bibtex",      # the BibTeX in the authors' own repository
    "official-readme",      # what the authors' own repository states (venue, paper link, results)
    "official-repository",  # the authors' repository itself (for the code link)
    "project-page",         # the authors' project page
]
FactName = Literal["title", "authors", "venue", "year", "arxiv", "doi", "url", "code", "aliases"]
_COMMIT_RX = re.compile(r"^[0-9a-f]{40}$")


def _commit(value: str) -> str:
    if not _COMMIT_RX.fullmatch(value):
        raise ValueError(f"{value!r} is not a full 40-character git commit id")
    return value


Commit = Annotated[StrictStr, AfterValidator(_commit)]


class SourceRef(Strict):
    """One primary source and the facts of the record that were checked against it."""

    url: HttpsUrl
    kind: SourceKind
    facts: Annotated[list[FactName], Field(min_length=1, max_length=20)]
    commit: Commit | None = None  # the repository commit whose README was read
    note: Para | None = None


class Sources(Strict):
    """How the record knows what it says: per kind of fact, the sources checked.

    Each result names its own source (``results[i].source``)."""

    bibliographic: Annotated[list[SourceRef], Field(min_length=1, max_length=20)]
    code: Annotated[list[SourceRef], Field(max_length=20)] = []


class ClassificationNote(Strict):
    """A public taxonomy files the method elsewhere: where, who says so, and why we differ."""

    alternative: CategoryId  # a category id (any level), or "baseline" (no category)
    # Who files it there: categories.yaml reference ids or record ids (a method's own authors). Empty only
    # when the note explains why a sibling variant (variant_of) is filed in the alternative category.
    held_by: Annotated[list[Id], Field(max_length=20)] = []
    reason: Para


class Unverified(Strict):
    """A fact that could not be checked against a primary source, and why."""

    field: Annotated[StrictStr, Field(max_length=80)]
    reason: Para


class MethodRecord(Strict):
    """One method of the knowledge base (format: ARCHITECTURE.md, "Knowledge base record")."""

    id: Id
    title: Line
    authors: Annotated[list[Person], Field(min_length=1, max_length=MAX_LIST)]
    venue: Line
    venue_short: Line | None = None
    venue_type: VenueType
    year: Annotated[StrictInt, Field(ge=MIN_YEAR, le=MAX_YEAR)]
    arxiv: ArxivId | None = None
    arxiv_class: ArxivClass | None = None  # primary subject class, e.g. cs.CV; only when checked
    doi: Doi | None = None
    url: HttpsUrl | None = None  # the paper's page when neither DOI nor arXiv exists
    code: HttpsUrl | None = None
    paradigm: Id
    category: CategoryId | None = None
    secondary_categories: Annotated[list[CategoryId], Field(max_length=MAX_LIST)] = []
    modalities: Annotated[list[Modality], Field(min_length=1)]
    tasks: Annotated[list[Id], Field(min_length=1, max_length=MAX_LIST)]
    summary: Para
    parameters: Parameters | None = None
    results: Annotated[list[Result], Field(max_length=MAX_LIST)] = []
    implementation: Implementation | None = None
    aliases: Annotated[list[Annotated[Line, Field(max_length=100)]], Field(max_length=MAX_LIST)] = []
    variant_of: Id | None = None  # a record this one varies or extends (same paper or same code base)
    classification_notes: Annotated[list[ClassificationNote], Field(max_length=20)] = []
    sources: Sources | None = None
    # Facts not checked against a primary source. A bare field name is the old form; the
    # knowledge-base rules (vlmeft validate) require {field, reason}.
    unverified: Annotated[list[StrictStr | Unverified], Field(max_length=MAX_LIST)] = []

    @model_validator(mode="after")
    def _consistent(self) -> MethodRecord:
        for name in ("modalities", "tasks", "secondary_categories", "aliases"):
            values = getattr(self, name)
            seen = {str(v).lower() for v in values}
            if len(seen) != len(values):
                raise ValueError(f"field '{name}': an entry is listed twice")
        if self.category and self.category in self.secondary_categories:
            raise ValueError("field 'secondary_categories': repeats the primary category")
        if self.secondary_categories and not self.category:
            raise ValueError("field 'secondary_categories': needs a primary 'category'")
        if self.category and self.implementation is None:
            raise ValueError(
                "field 'implementation': a categorised method must link to code "
                "(its own, or its category's reference with fidelity category-reference)"
            )
        impl = self.implementation
        if impl and impl.fidelity == "category-reference" and not self.category:
            raise ValueError("field 'implementation.fidelity': category-reference needs the record to have a category")
        reference = registry.CATEGORY_REFERENCE.get(self.category or "")
        # A category with no reference (unknown, or a new leaf) is reported by the loader,
        # which knows the tree and can say which of the two it is.
        if impl and impl.fidelity == "category-reference" and reference is not None and impl.id != reference:
            raise ValueError(
                f"field 'implementation.id': category-reference for {self.category} must be '{reference}', not '{impl.id}'"
            )
        if self.variant_of == self.id:
            raise ValueError("field 'variant_of': a record cannot be a variant of itself")
        for item in self.unverified:
            entry = item.field if isinstance(item, Unverified) else item
            m = _UNVERIFIED_RX.fullmatch(entry)
            if not m or m.group(1) not in MethodRecord.model_fields:
                raise ValueError(f"field 'unverified': {entry!r} does not name a field of the record (e.g. authors, \"results[0]\")")
            if m.group(2) is not None:
                target = getattr(self, m.group(1))
                if not isinstance(target, list) or int(m.group(2)) >= len(target):
                    raise ValueError(f"field 'unverified': {entry!r} points past the end of '{m.group(1)}'")
        return self

    @property
    def name(self) -> str:
        """Display name: the first alias (usually the acronym), else the id."""
        return self.aliases[0] if self.aliases else self.id

    @property
    def unverified_fields(self) -> list[str]:
        """The field names ``unverified`` lists, in either form."""
        return [u.field if isinstance(u, Unverified) else u for u in self.unverified]


# ---------------------------------------------------------------------------------------
# The category tree (taxonomy/categories.yaml)
# ---------------------------------------------------------------------------------------

FlagOrAny = StrictBool | Literal["any"]


class Signature(Strict):
    """A leaf's behavioural signature: what conformance probes check. Keys and values are
    documented in categories.yaml (``signature_keys``), which must match this model."""

    trains: FlagOrAny
    text_changes: FlagOrAny
    image_changes: FlagOrAny
    text_depends_on_image: FlagOrAny | Literal["declared"]
    image_depends_on_text: FlagOrAny
    pixels_change: FlagOrAny
    pixels_change_only_in_marker: StrictBool | Literal["na"]
    vision_tokens_grow: FlagOrAny
    vision_prompt_grad_wrt_text_prompt: Literal["nonzero", "zero", "na"]
    crossmodal_dependence: Literal["none", "present", "declared"]


def signature_values(key: str) -> list[Any]:
    """The values ``Signature.<key>`` accepts, in a stable order (True, False, then words)."""
    out: list[Any] = []

    def walk(tp: Any) -> None:
        origin = get_origin(tp)
        if tp is bool:
            out.extend([True, False])
        elif origin is Literal:
            out.extend(get_args(tp))
        elif origin is Annotated:  # StrictBool = Annotated[bool, Strict()]
            walk(get_args(tp)[0])
        else:  # a union
            for arg in get_args(tp):
                walk(arg)

    walk(Signature.model_fields[key].annotation)
    return list(dict.fromkeys(out))


class SignatureKey(Strict):
    values: list[StrictBool | StrictStr]
    meaning: Para


class RelatedLabel(Strict):
    ref: Id
    label: Line


class Provenance(Strict):
    """Where a node comes from: what the survey fixes, and what we reconstructed."""

    survey: Para  # what the survey's abstract fixes about this node
    reconstruction: Para  # our naming and boundary, and why
    supported_by: Annotated[list[Id], Field(min_length=1)]  # ids in `references`
    related_labels: list[RelatedLabel] = []
    alternatives: Para | None = None


class _Node(Strict):
    id: CategoryId
    name: Line
    definition: Para
    provenance: Provenance


class Leaf(_Node):
    signature: Signature
    signature_text: Para


class TypeNode(_Node):
    """A type; it is a leaf itself when it has no subtypes (then it carries a signature)."""

    subtypes: list[Leaf] = []
    signature: Signature | None = None
    signature_text: Para | None = None

    @model_validator(mode="after")
    def _leaf_or_parent(self) -> TypeNode:
        has_sig = self.signature is not None and self.signature_text is not None
        if self.subtypes and (self.signature or self.signature_text):
            raise ValueError(f"type {self.id} has subtypes, so the signature belongs on them")
        if not self.subtypes and not has_sig:
            raise ValueError(f"type {self.id} has no subtypes, so it is a leaf and needs signature and signature_text")
        for leaf in self.subtypes:
            if leaf.id.rsplit(".", 1)[0] != self.id:
                raise ValueError(f"subtype id '{leaf.id}' must extend its type id '{self.id}'")
        return self


class Family(_Node):
    types: Annotated[list[TypeNode], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids(self) -> Family:
        if "." in self.id:
            raise ValueError(f"family id '{self.id}' must be one segment")
        for t in self.types:
            if t.id.rsplit(".", 1)[0] != self.id or t.id.count(".") != 1:
                raise ValueError(f"type id '{t.id}' must be '{self.id}.<name>'")
        return self


class Reference(Strict):
    """A work cited for the taxonomy's provenance."""

    id: Id
    citation: Line
    arxiv: ArxivId | None = None
    doi: Doi | None = None
    url: HttpsUrl | None = None
    supports: Para


class CategoriesFile(Strict):
    signature_keys: dict[str, SignatureKey]
    references: Annotated[list[Reference], Field(min_length=1)]
    families: Annotated[list[Family], Field(min_length=1)]

    @model_validator(mode="after")
    def _checks(self) -> CategoriesFile:
        documented, modelled = set(self.signature_keys), set(Signature.model_fields)
        if documented != modelled:
            raise ValueError(
                f"signature_keys must document exactly {sorted(modelled)}; "
                f"missing {sorted(modelled - documented)}, unknown {sorted(documented - modelled)}"
            )
        for key, doc in self.signature_keys.items():
            if set(map(repr, doc.values)) != set(map(repr, signature_values(key))):
                raise ValueError(f"signature_keys.{key}.values must be {signature_values(key)}")
        refs = [r.id for r in self.references]
        if len(set(refs)) != len(refs):
            raise ValueError("references: duplicate id")
        ids: list[str] = []
        for fam in self.families:
            for node in (fam, *fam.types, *(s for t in fam.types for s in t.subtypes)):
                ids.append(node.id)
                for ref in (*node.provenance.supported_by, *(r.ref for r in node.provenance.related_labels)):
                    if ref not in refs:
                        raise ValueError(f"node {node.id}: provenance names unknown reference '{ref}'")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate category id(s): {', '.join(dupes)}")
        return self


# ---------------------------------------------------------------------------------------
# Survey, tasks, paradigms, topics
# ---------------------------------------------------------------------------------------


class Section(Strict):
    number: Annotated[StrictInt, Field(ge=1)]
    title: Line
    inferred: StrictBool


class SurveyRecord(Strict):
    """The survey this knowledge base is organised after."""

    id: Id
    title: Line
    authors: Annotated[list[Person], Field(min_length=1)]
    journal: Line
    journal_short: Line | None = None
    publisher: Line | None = None
    volume: Annotated[StrictInt, Field(ge=1)]
    article_number: Line
    year: Annotated[StrictInt, Field(ge=MIN_YEAR, le=MAX_YEAR)]
    doi: Doi
    url: HttpsUrl
    keywords: list[Line] = []
    open_access: StrictBool
    abstract_facts: Annotated[list[Para], Field(min_length=1)]  # paraphrased, what the abstract fixes
    sections: Annotated[list[Section], Field(min_length=1)]
    sections_note: Para
    affiliations: list[Line] = []


class Task(Strict):
    id: Id
    name: Line
    kind: Literal["vision", "vision-language"]
    description: Para


class TasksFile(Strict):
    tasks: Annotated[list[Task], Field(min_length=1)]


class Paradigm(Strict):
    id: Id
    name: Line
    description: Para
    family: Id | None  # the category family its records belong to; None: records have no category


class ParadigmsFile(Strict):
    paradigms: Annotated[list[Paradigm], Field(min_length=1)]


class Topic(Strict):
    id: Id
    title: Line
    body: Para
    provenance: Para


class TopicsFile(Strict):
    topics: list[Topic]


# ---------------------------------------------------------------------------------------
# Results vocabulary (taxonomy/vocab.yaml)
# ---------------------------------------------------------------------------------------

VOCAB_ID_PATTERN = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
VocabId = Annotated[_pattern_type(VOCAB_ID_PATTERN, "a vocabulary id", "oxford_pets"), Field(max_length=64)]


class VocabMetric(Strict):
    id: VocabId
    name: Line
    unit: Literal["percent", "points"]
    description: Para


class VocabProtocol(Strict):
    id: VocabId
    name: Line
    shots: Literal["required", "forbidden", "optional"]
    description: Para


class VocabDataset(Strict):
    id: VocabId
    name: Line
    group: Id
    members: list[VocabId] = []  # an aggregate's datasets (empty: not in the vocabulary)


class VocabBackbone(Strict):
    id: VocabId
    name: Line
    open_clip: Line | None = None  # the open_clip model name, where there is one


class VocabFile(Strict):
    metrics: Annotated[list[VocabMetric], Field(min_length=1)]
    protocols: Annotated[list[VocabProtocol], Field(min_length=1)]
    datasets: Annotated[list[VocabDataset], Field(min_length=1)]
    backbones: Annotated[list[VocabBackbone], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> VocabFile:
        for kind in ("metrics", "protocols", "datasets", "backbones"):
            ids = [e.id for e in getattr(self, kind)]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate id(s) {', '.join(dupes)}")
        known = {d.id for d in self.datasets}
        for d in self.datasets:
            unknown = [m for m in d.members if m not in known]
            if unknown:
                raise ValueError(f"dataset {d.id}: unknown member(s) {', '.join(unknown)}")
        return self


# ---------------------------------------------------------------------------------------
# The knowledge base's own release (taxonomy/kb.yaml) and changelog (taxonomy/changelog.yaml)
# ---------------------------------------------------------------------------------------

VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"
Version = _pattern_type(VERSION_PATTERN, "a version (N.N.N)", "2026.12.1")


class KbMeta(Strict):
    """The knowledge base as a citable work: its name, release and where it lives."""

    title: Line
    short_title: Line
    version: Version
    released: datetime.date
    url: HttpsUrl | None = None  # the stable URL of the released site; None until it is published
    authors: Annotated[list[Line], Field(min_length=1)]
    description: Para


ChangeField = Literal[
    "record", "category", "secondary_categories", "title", "authors", "venue", "venue_type", "year", "arxiv",
    "doi", "url", "code", "aliases", "summary", "parameters", "results", "implementation", "variant_of",
    "classification_notes", "sources", "unverified", "modalities", "tasks",
]


class Change(Strict):
    record: Id
    fields: Annotated[list[ChangeField], Field(min_length=1)]
    what: Para
    source: HttpsUrl | None = None


class Release(Strict):
    version: Version
    date: datetime.date
    summary: Para
    changes: list[Change] = []


class ChangelogFile(Strict):
    releases: Annotated[list[Release], Field(min_length=1)]

    @model_validator(mode="after")
    def _ordered(self) -> ChangelogFile:
        versions = [r.version for r in self.releases]
        if len(set(versions)) != len(versions):
            raise ValueError("releases: a version is listed twice")
        dates = [r.date for r in self.releases]
        if dates != sorted(dates, reverse=True):
            raise ValueError("releases: list the newest release first")
        return self


# ---------------------------------------------------------------------------------------
# JSON Schema export
# ---------------------------------------------------------------------------------------

SCHEMAS: dict[str, type[BaseModel]] = {
    "method": MethodRecord,
    "categories": CategoriesFile,
    "survey": SurveyRecord,
    "tasks": TasksFile,
    "paradigms": ParadigmsFile,
    "topics": TopicsFile,
    "vocab": VocabFile,
    "kb": KbMeta,
    "changelog": ChangelogFile,
}


def json_schema(kind: str = "method") -> dict[str, Any]:
    """The JSON Schema of one file kind (``method``, ``categories``, ...), for docs and editors."""
    from vlmeft.errors import VlmeftError

    if kind not in SCHEMAS:
        raise VlmeftError(f"unknown schema '{kind}'; known: {', '.join(SCHEMAS)}")
    schema = SCHEMAS[kind].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def json_schema_text(kind: str = "method") -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"
