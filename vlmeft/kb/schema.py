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
    """One reported result and where it was read."""

    metric: Line
    value: Number
    dataset: Line
    protocol: Line | None = None
    backbone: Line | None = None
    source: Source
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
    unverified: Annotated[list[StrictStr], Field(max_length=MAX_LIST)] = []

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
        for entry in self.unverified:
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
# JSON Schema export
# ---------------------------------------------------------------------------------------

SCHEMAS: dict[str, type[BaseModel]] = {
    "method": MethodRecord,
    "categories": CategoriesFile,
    "survey": SurveyRecord,
    "tasks": TasksFile,
    "paradigms": ParadigmsFile,
    "topics": TopicsFile,
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
