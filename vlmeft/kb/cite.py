"""Citations of knowledge-base entries: BibTeX, CSL-JSON and a plain-text (APA-like) style.

Each function takes method records and/or the survey record. BibTeX keys are the record
ids (stable, unique, kebab-case); the survey's key is its own id. Every value is escaped
so that the output parses in strict BibTeX readers whatever the record holds.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from vlmeft.errors import VlmeftError
from vlmeft.kb.schema import MethodRecord, SurveyRecord



@dataclass(frozen=True)
class KbEntry:
    """An entry of the knowledge base itself (a taxonomy node, or a method's page), citable
    beside the works it describes: it names the knowledge base's release and stable URL."""

    key: str  # BibTeX key / CSL id, e.g. "vlmeft:prompt.multimodal.coupled"
    title: str
    authors: tuple[str, ...]  # corporate authors, kept whole
    container: str  # the knowledge base's title
    version: str
    released: datetime.date
    path: str  # the entry's path inside the site, e.g. "generated/taxonomy/prompt.multimodal.coupled/"
    site_url: str | None  # the site's stable URL, if published
    note: str

    @property
    def url(self) -> str | None:
        return self.site_url.rstrip("/") + "/" + self.path if self.site_url else None


Citable = MethodRecord | SurveyRecord | KbEntry

# Lower-case name particles, plus capitalised ones that are particles when they are not
# the first word ("Ismail Ben Ayed", "Oisin Mac Aodha"). A record can always force the
# split by writing "Family, Given".
_PARTICLES = {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "dos", "le", "la", "ben", "mac", "bin", "al", "el", "ter", "ten"}


def split_name(name: str) -> tuple[str, str]:
    """(family, given) of an author written "Given Family" or "Family, Given"."""
    if "," in name:
        family, given = (part.strip() for part in name.split(",", 1))
        return family, given
    words = name.split()
    if len(words) == 1:
        return words[0], ""
    start = len(words) - 1
    while start > 1 and words[start - 1].casefold() in _PARTICLES:
        start -= 1
    return " ".join(words[start:]), " ".join(words[:start])


@dataclass(frozen=True)
class _Ref:
    key: str
    kind: str  # journal | conference | workshop | preprint
    title: str
    authors: list[tuple[str, str]]
    container: str
    container_short: str | None
    year: int
    volume: str | None = None
    article_number: str | None = None
    publisher: str | None = None
    doi: str | None = None
    url: str | None = None
    arxiv: str | None = None
    arxiv_class: str | None = None
    version: str | None = None
    note: str | None = None
    date: datetime.date | None = None


def _ref(item: Citable) -> _Ref:
    if isinstance(item, KbEntry):
        howpublished = (f"{item.container}, version {item.version}" if item.title != item.container
                        else f"version {item.version}")
        if not item.url:
            howpublished += f", {item.path}"
        return _Ref(
            key=item.key, kind="entry", title=item.title, authors=[(a, "") for a in item.authors],
            container=howpublished, container_short=item.container, year=item.released.year, url=item.url,
            version=item.version, note=item.note, date=item.released,
        )
    authors = [split_name(a) for a in item.authors]
    if isinstance(item, SurveyRecord):
        return _Ref(
            key=item.id, kind="journal", title=item.title, authors=authors, container=item.journal,
            container_short=item.journal_short, year=item.year, volume=str(item.volume),
            article_number=item.article_number, publisher=item.publisher, doi=item.doi, url=item.url,
        )
    if isinstance(item, MethodRecord):
        url = item.url or (f"https://arxiv.org/abs/{item.arxiv}" if item.arxiv else None)
        return _Ref(
            key=item.id, kind=item.venue_type, title=item.title, authors=authors, container=item.venue,
            container_short=item.venue_short, year=item.year, doi=item.doi, url=url, arxiv=item.arxiv,
            arxiv_class=item.arxiv_class,
        )
    raise VlmeftError(f"cannot cite a {type(item).__name__}")


def _link(ref: _Ref) -> str | None:
    return f"https://doi.org/{ref.doi}" if ref.doi else ref.url


# ---------------------------------------------------------------------------------------
# BibTeX
# ---------------------------------------------------------------------------------------

# Braces are written as commands, not "\{": BibTeX counts every brace in a value when it
# looks for the value's end, escaped or not, so a lone "\{" would unbalance the entry.
_LATEX = {
    "\\": r"\textbackslash{}",
    "{": r"\textbraceleft{}",
    "}": r"\textbraceright{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "@": r"{@}",
}
_LATEX_RX = re.compile("|".join(re.escape(c) for c in _LATEX))


def latex_escape(text: str) -> str:
    """``text`` with LaTeX/BibTeX special characters made literal."""
    return _LATEX_RX.sub(lambda m: _LATEX[m.group(0)], " ".join(text.split()))


def _protect_title(title: str) -> str:
    """Escape, and brace words with capitals after their first letter ({CLIP}, {CoOp}),
    so bibliography styles that lower-case titles keep them."""
    words = []
    for word in title.split():
        escaped = latex_escape(word)
        if any(c.isupper() for c in word[1:]):
            escaped = "{" + escaped + "}"
        words.append(escaped)
    return " ".join(words)


def _bib_names(authors: list[tuple[str, str]]) -> str:
    # Brace each family name so BibTeX never re-splits a multi-word one ("Ben Ayed").
    parts = []
    for family, given in authors:
        fam = latex_escape(family)
        fam = "{" + fam + "}" if " " in family else fam
        parts.append(f"{fam}, {latex_escape(given)}" if given else fam)
    return " and ".join(parts)


def _bibtex_entry(item: Citable) -> str:
    ref = _ref(item)
    fields: list[tuple[str, str]] = [("author", _bib_names(ref.authors)), ("title", _protect_title(ref.title))]
    if ref.kind == "journal":
        entry_type = "article"
        fields.append(("journal", latex_escape(ref.container)))
    elif ref.kind in ("conference", "workshop"):
        entry_type = "inproceedings"
        fields.append(("booktitle", latex_escape(ref.container)))
    else:
        entry_type = "misc"
        if not ref.arxiv:
            fields.append(("howpublished", latex_escape(ref.container)))
    fields.append(("year", str(ref.year)))
    if ref.version:
        fields.append(("version", latex_escape(ref.version)))
    if ref.note:
        fields.append(("note", latex_escape(ref.note)))
    if ref.volume:
        fields.append(("volume", latex_escape(ref.volume)))
    if ref.article_number:
        fields.append(("pages", latex_escape(ref.article_number)))
    if ref.publisher:
        fields.append(("publisher", latex_escape(ref.publisher)))
    if ref.doi:
        fields.append(("doi", ref.doi))  # the schema's DOI pattern admits no brace or backslash
    if ref.arxiv:
        fields += [("eprint", ref.arxiv), ("archivePrefix", "arXiv")]
        if ref.arxiv_class:
            fields.append(("primaryClass", ref.arxiv_class))
    if ref.url:
        fields.append(("url", ref.url))  # https URLs only, with no brace, space or backslash
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{entry_type}{{{ref.key},\n{body}\n}}\n"


def bibtex(records: Iterable[Citable]) -> str:
    """BibTeX entries for ``records``, separated by blank lines."""
    return "\n".join(_bibtex_entry(r) for r in records)


# ---------------------------------------------------------------------------------------
# CSL-JSON
# ---------------------------------------------------------------------------------------

_CSL_TYPE = {"journal": "article-journal", "conference": "paper-conference", "workshop": "paper-conference",
             "preprint": "article", "entry": "entry"}


def _csl_item(item: Citable) -> dict:
    ref = _ref(item)
    out: dict = {
        "id": ref.key,
        "type": _CSL_TYPE[ref.kind],
        "title": ref.title,
        "author": ([{"literal": f} for f, _ in ref.authors] if ref.kind == "entry"
                   else [{"family": f, "given": g} if g else {"family": f} for f, g in ref.authors]),
        "issued": {"date-parts": [[ref.date.year, ref.date.month, ref.date.day] if ref.date else [ref.year]]},
        "container-title": "arXiv" if ref.kind == "preprint" and ref.arxiv else ref.container,
    }
    if ref.kind == "entry":  # the plain title; version and path have fields of their own
        out["container-title"] = ref.container_short
        if not ref.url:
            out["note"] = f"{ref.note} Site path: {ref.container.rsplit(', ', 1)[-1]}."
    elif ref.container_short:
        out["container-title-short"] = ref.container_short
    if ref.kind in ("conference", "workshop"):
        out["event-title"] = ref.container
    if ref.volume:
        out["volume"] = ref.volume
    if ref.article_number:
        out["page"] = ref.article_number
    if ref.publisher:
        out["publisher"] = ref.publisher
    if ref.doi:
        out["DOI"] = ref.doi
    if ref.version:
        out["version"] = ref.version
    if ref.note and "note" not in out:
        out["note"] = ref.note
    if ref.kind == "preprint" and ref.arxiv:
        out["number"] = f"arXiv:{ref.arxiv}"
        out["publisher"] = "arXiv"
    elif ref.arxiv:
        out["note"] = f"arXiv:{ref.arxiv}"
    link = ref.url or _link(ref)
    if link:
        out["URL"] = link
    return out


def csl_json(records: Iterable[Citable]) -> list[dict]:
    """CSL-JSON items (a list of dicts, ready for ``json.dumps``)."""
    return [_csl_item(r) for r in records]


def csl_json_text(records: Iterable[Citable]) -> str:
    return json.dumps(csl_json(records), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------
# Plain text (APA-like)
# ---------------------------------------------------------------------------------------


def _initials(given: str) -> str:
    out = []
    for word in given.split():
        parts = [p for p in word.split("-") if p]
        out.append("-".join(p[0] + "." for p in parts))
    return " ".join(out)


def _apa_names(authors: list[tuple[str, str]]) -> str:
    names = [f"{f}, {_initials(g)}" if g else f for f, g in authors]
    if len(names) == 1:
        return names[0]
    if len(names) > 20:  # APA 7: the first 19, an ellipsis, the last
        return ", ".join(names[:19]) + ", ... " + names[-1]
    return ", ".join(names[:-1]) + ", & " + names[-1]


def text(record: Citable) -> str:
    """One plain-text reference in an APA-like style."""
    ref = _ref(record)
    title = ref.title if ref.title.endswith(("?", "!", ".")) else ref.title + "."
    parts = [f"{_apa_names(ref.authors)} ({ref.year}).", title]
    if ref.kind == "journal":
        source = ref.container
        if ref.volume:
            source += f", {ref.volume}"
        if ref.article_number:
            source += f", {ref.article_number}"
        parts.append(source + ".")
    elif ref.kind in ("conference", "workshop"):
        short = f" ({ref.container_short})" if ref.container_short and ref.container_short not in ref.container else ""
        parts.append(f"In {ref.container}{short}.")
    elif ref.kind == "entry":
        parts.append(f"In {ref.container} (released {ref.date.isoformat() if ref.date else ref.year}). {ref.note}")
    elif ref.arxiv:
        parts.append(f"arXiv preprint arXiv:{ref.arxiv}.")
    else:
        parts.append(f"{ref.container}.")
    link = _link(ref)
    if link:
        parts.append(link)
    return " ".join(parts)


def text_all(records: Iterable[Citable]) -> str:
    return "".join(text(r) + "\n" for r in records)


FORMATS = {"bibtex": bibtex, "csljson": csl_json_text, "text": text_all}


def render(records: Iterable[Citable], fmt: str) -> str:
    """``records`` in one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise VlmeftError(f"unknown citation format '{fmt}'; known: {', '.join(FORMATS)}")
    return FORMATS[fmt](list(records))


# ---------------------------------------------------------------------------------------
# The knowledge base's own entries: taxonomy nodes and method pages
# ---------------------------------------------------------------------------------------

NODE_PATH = "generated/taxonomy/{}/"
RECORD_PATH = "generated/methods/{}/"


def _release(kb) -> tuple:  # noqa: ANN001 - a vlmeft.kb.load.KnowledgeBase
    if kb.meta is None:
        raise VlmeftError("this knowledge base has no kb.yaml (title, version, release date), so its entries "
                          "cannot be cited", where=str(kb.root))
    m = kb.meta
    return m.title, m.version, m.released, (str(m.url) if m.url else None), tuple(m.authors)


def _survey_short(kb) -> str:  # noqa: ANN001
    s = kb.survey
    first = split_name(s.authors[0])[0]
    return f"{first} et al., {s.journal} {s.volume} ({s.year}) {s.article_number}, doi:{s.doi}"


def node_entry(kb, node_id: str) -> KbEntry:  # noqa: ANN001
    """The citable entry of taxonomy node ``node_id`` (any level)."""
    node = kb.categories.node(node_id)
    title, version, released, url, authors = _release(kb)
    level = {0: "Family", 1: "Type"}.get(node_id.count("."), "Subtype")
    note = (f"{level} of the taxonomy of efficient fine-tuning of vision-language models organised after "
            f"the survey by {_survey_short(kb)}; the node names are the knowledge base's reconstruction.")
    return KbEntry(key=f"vlmeft:{node_id}", title=f"{node.name} ({node_id})", authors=authors, container=title,
                   version=version, released=released, path=NODE_PATH.format(node_id), site_url=url, note=note)


def record_entry(kb, rec: MethodRecord) -> KbEntry:  # noqa: ANN001
    """The knowledge base's entry for method ``rec`` (cite it beside the paper)."""
    title, version, released, url, authors = _release(kb)
    where = f"filed under {rec.category}" if rec.category else "a baseline with no category"
    note = f"Knowledge-base entry for {rec.title} ({rec.year}), {where}."
    return KbEntry(key=f"vlmeft:{rec.id}", title=f"{rec.name} ({rec.id})", authors=authors, container=title,
                   version=version, released=released, path=RECORD_PATH.format(rec.id), site_url=url, note=note)


def kb_entry(kb) -> KbEntry:  # noqa: ANN001
    """The knowledge base as a whole, at its current release."""
    title, version, released, url, authors = _release(kb)
    return KbEntry(key="vlmeft", title=title, authors=authors, container=title, version=version,
                   released=released, path="", site_url=url,
                   note=f"Organised after the survey by {_survey_short(kb)}.")
