"""Rules that hold the whole knowledge base to its promise: every fact checked, and the
record says how.

The schema (:mod:`vlmeft.kb.schema`) checks one file's shape and the loader checks each
record against the taxonomy, tasks and vocabulary. These rules look at what the records
claim and where they say they checked it, across records:

- ``sources``: every record names a primary source for each kind of fact it states
  (title, authors, venue, year, arXiv id, DOI, code); every source URL is of the kind it
  claims (an ``arxiv`` source is the record's own arXiv page, an ``official-*`` source is
  the record's own code repository, a ``proceedings`` source is a venue's site, ...);
- ``results``: each result's source is a paper page or an official repository of a
  method in the knowledge base; values are in range; a base-to-novel HM agrees with its
  base and novel accuracies;
- ``unverified``: each entry gives its reason;
- ``venue``: a published venue has a year that fits the arXiv id and the venue's calendar;
- ``code``: two records share a code URL only when one is a variant of the other;
- ``aliases``: no alias or id equals another record's once case and punctuation are ignored;
- ``variants``: a variant filed in another category than its base says why.

``vlmeft validate`` runs them on a knowledge base that publishes releases (one with
``kb.yaml``, like the shipped one); :func:`vlmeft.kb.load.load_kb` does not (loading stays fast
and tolerant of fixture knowledge bases).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vlmeft.errors import VlmeftError
from vlmeft.kb.safe_yaml import YamlDocument
from vlmeft.kb.schema import MethodRecord, SourceRef, Unverified

Item = tuple[MethodRecord, YamlDocument]

# Hosts of the venues' own pages (proceedings, OpenReview, the conferences' virtual sites).
PROCEEDINGS_HOSTS = {
    "openaccess.thecvf.com", "cvpr.thecvf.com", "iccv.thecvf.com", "wacv.thecvf.com", "eccv.ecva.net", "www.ecva.net",
    "ecva.net", "proceedings.neurips.cc", "papers.nips.cc", "neurips.cc", "nips.cc", "openreview.net", "iclr.cc",
    "icml.cc", "proceedings.mlr.press", "aclanthology.org", "ojs.aaai.org", "aaai.org", "bmvc2022.mpi-inf.mpg.de",
    "bmva-archive.org.uk", "www.bmva-archive.org.uk", "jmlr.org", "www.jmlr.org", "proceedings.iclr.cc",
}
PUBLISHER_HOSTS = {
    "doi.org", "link.springer.com", "www.sciencedirect.com", "ieeexplore.ieee.org", "dl.acm.org",
    "www.keaipublishing.com", "academic.oup.com",
}
# mlanthology.org republishes the proceedings' metadata (title, authors, venue, DOI) of ML venues.
INDEX_HOSTS = {"doaj.org", "dblp.org", "dblp.uni-trier.de", "api.crossref.org", "search.crossref.org", "mlanthology.org"}
ARXIV_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org", "ar5iv.labs.arxiv.org", "ar5iv.org"}
PAPER_HOSTS = PROCEEDINGS_HOSTS | PUBLISHER_HOSTS | ARXIV_HOSTS
# Code hosts whose URLs name a repository as /owner/name.
REPO_HOSTS = {"github.com", "gitlab.com", "bitbucket.org", "huggingface.co"}

# What each kind of fact must be checked against (record field -> facts a source covers it with).
BIBLIOGRAPHIC_FACTS = ("title", "authors", "venue", "year")
# Conferences held only in odd or only in even years.
_CALENDAR = {"ICCV": 1, "ECCV": 0}
# Metrics whose values are percentages (0-100).
_PERCENT_METRICS = {"accuracy", "base", "novel", "hm", "miou", "recall-at-1", "average-score"}
HM_TOLERANCE = 0.06  # points: the papers round base, novel and HM to two decimals each


def repo_key(url: str) -> str | None:
    """A comparable key for a code URL: ``host/owner/name`` on code hosts (plus a sub-folder
    given with ``/tree/<branch>/<path>``), else ``host/path``. None if not a URL."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        return None
    host = parts.netloc.lower().removeprefix("www.")
    segments = [s for s in parts.path.split("/") if s]
    if host in REPO_HOSTS:
        if len(segments) < 2:
            return None
        owner, name = segments[0].lower(), segments[1].lower().removesuffix(".git")
        sub = segments[4:] if len(segments) > 4 and segments[2] in ("tree", "blob") else []
        return "/".join([host, owner, name, *(s.lower() for s in sub)])
    return "/".join([host, *(s.lower() for s in segments)])


def _repo_root(key: str) -> str:
    """``host/owner/name`` of a code-host key (drops a sub-folder)."""
    parts = key.split("/")
    return "/".join(parts[:3]) if parts[0] in REPO_HOSTS else key


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _norm_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.casefold())


def _arxiv_base(arxiv: str) -> str:
    return re.sub(r"v\d+$", "", arxiv)


class _Report:
    def __init__(self) -> None:
        self.errors: list[VlmeftError] = []

    def add(self, doc: YamlDocument, loc: tuple[Any, ...], message: str) -> None:
        from vlmeft.kb.load import _dotted

        field = f" field '{_dotted(loc)}'" if loc else ""
        self.errors.append(VlmeftError(message, where=f"{doc.at(loc)}{field}"))


# ---------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------


def source_kind_problem(rec: MethodRecord, src: SourceRef) -> str | None:
    """Why ``src`` is not of the kind it claims for ``rec`` (None: it is)."""
    host = _host(src.url)
    path = urlsplit(src.url).path
    if src.kind == "arxiv":
        m = re.fullmatch(r"/(?:abs|html|pdf)/([0-9]{4}\.[0-9]{4,5})(?:v[0-9]+)?(?:\.pdf)?/?", path)
        if host not in ARXIV_HOSTS or not m:
            return "an arxiv source must be https://arxiv.org/abs/<id> (or /html/<id>)"
        if not rec.arxiv or m.group(1) != _arxiv_base(rec.arxiv):
            return f"the arXiv page {m.group(1)} is not the record's arXiv id ({rec.arxiv or 'none'})"
        return None
    if src.kind == "proceedings":
        return None if host in PROCEEDINGS_HOSTS else (
            f"'{host}' is not a venue's own site (known: CVF open access, NeurIPS/ICML/ACL/AAAI proceedings, "
            "OpenReview, the conferences' virtual sites)")
    if src.kind == "publisher":
        if host not in PUBLISHER_HOSTS:
            return f"'{host}' is not a publisher's site or the DOI resolver"
        if host == "doi.org" and (not rec.doi or path.lstrip("/").casefold() != rec.doi.casefold()):
            return f"the DOI link is not the record's DOI ({rec.doi or 'none'})"
        return None
    if src.kind == "index":
        return None if host in INDEX_HOSTS else f"'{host}' is not a bibliographic index (DOAJ, dblp, Crossref, ML Anthology)"
    if src.kind in ("official-bibtex", "official-readme", "official-repository"):
        if not rec.code:
            return f"an {src.kind} source needs the record's 'code' repository"
        got, want = repo_key(src.url), repo_key(rec.code)
        if got is None or want is None or _repo_root(got) != _repo_root(want):
            return f"an {src.kind} source must be the record's own code repository ({rec.code})"
        return None
    if src.kind == "project-page":
        return None if host not in PAPER_HOSTS else f"'{host}' is a paper host, not a project page"
    return f"unknown source kind '{src.kind}'"


def _check_sources(rec: MethodRecord, doc: YamlDocument, report: _Report) -> None:
    unverified = set(rec.unverified_fields)
    if rec.sources is None:
        report.add(doc, (), "no 'sources': name the primary source checked for each kind of fact "
                            "(sources.bibliographic, sources.code), or list the fact in 'unverified' with a reason")
        return
    covered: dict[str, list[SourceRef]] = defaultdict(list)
    for group in ("bibliographic", "code"):
        for i, src in enumerate(getattr(rec.sources, group)):
            problem = source_kind_problem(rec, src)
            if problem:
                report.add(doc, ("sources", group, i, "url"), problem)
            if src.commit is not None and _host(src.url) not in REPO_HOSTS:
                report.add(doc, ("sources", group, i, "commit"), "a commit only makes sense for a repository source")
            for fact in src.facts:
                covered[fact].append(src)
            if group == "code" and "code" not in src.facts:
                report.add(doc, ("sources", group, i, "facts"), "a code source must check the 'code' fact")
    needed = list(BIBLIOGRAPHIC_FACTS)
    needed += [f for f in ("arxiv", "doi", "url", "code") if getattr(rec, f)]
    for fact in needed:
        if not covered.get(fact) and fact not in unverified:
            hint = " (the official repository, or the paper page that links it)" if fact == "code" else ""
            report.add(doc, ("sources",), f"no source checks '{fact}'{hint}; name one in 'sources' or list it in 'unverified' with a reason")
    # A published venue is checked against the venue, the publisher or the authors, never arXiv alone.
    venue_sources = [s for s in covered.get("venue", []) if s.kind != "arxiv"]
    if rec.venue_type != "preprint" and not venue_sources and "venue" not in unverified:
        report.add(doc, ("sources",), f"the venue ({rec.venue}) needs a proceedings, publisher, index or official source, not arXiv")
    if rec.venue_type == "preprint" and not rec.arxiv and not rec.url:
        report.add(doc, ("venue_type",), "a preprint needs its arXiv id (or url)")


def _check_unverified(rec: MethodRecord, doc: YamlDocument, report: _Report) -> None:
    for i, entry in enumerate(rec.unverified):
        if not isinstance(entry, Unverified):
            report.add(doc, ("unverified", i), f"'{entry}' gives no reason; write {{field: {entry}, reason: ...}} "
                                               "saying why it cannot be checked here")


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------


def _check_results(rec: MethodRecord, doc: YamlDocument, code_repos: set[str], report: _Report) -> None:
    groups: dict[tuple, dict[str, tuple[int, float]]] = defaultdict(dict)
    for i, res in enumerate(rec.results):
        src = res.source
        if not src.startswith("https://"):
            report.add(doc, ("results", i, "source"), "a result's source must be a link to the paper or an official repository")
        else:
            host = _host(src)
            key = repo_key(src)
            if host not in PAPER_HOSTS and not (key and _repo_root(key) in code_repos):
                report.add(doc, ("results", i, "source"),
                           f"'{src}' is neither a paper page nor the official repository of a method in the knowledge base")
            if host in ARXIV_HOSTS and not res.locator:
                report.add(doc, ("results", i, "locator"), "say where in the paper (e.g. 'Table 1')")
        if res.metric in _PERCENT_METRICS and not 0 <= res.value <= 100:
            report.add(doc, ("results", i, "value"), f"{res.value} is not a percentage")
        key = (res.dataset, res.protocol, res.shots, res.backbone, res.setting, res.source)
        if not res.discrepancy:  # a stated discrepancy is reported as printed, and says why
            groups[key][res.metric] = (i, res.value)
    for metrics in groups.values():
        if {"base", "novel", "hm"} <= set(metrics):
            (_, b), (_, n), (i, h) = metrics["base"], metrics["novel"], metrics["hm"]
            expected = 2 * b * n / (b + n) if b + n else 0.0
            if abs(expected - h) > HM_TOLERANCE:
                report.add(doc, ("results", i, "value"),
                           f"HM {h:g} does not match base {b:g} and novel {n:g} (their harmonic mean is {expected:.2f}); "
                           "fix the value, or keep the source's number and say why in 'discrepancy'")


# ---------------------------------------------------------------------------------------
# venue and year
# ---------------------------------------------------------------------------------------


def _check_venue_year(rec: MethodRecord, doc: YamlDocument, report: _Report) -> None:
    arxiv_year = 2000 + int(rec.arxiv[:2]) if rec.arxiv else None
    if rec.venue_type == "preprint":
        if arxiv_year is not None and rec.year != arxiv_year:
            report.add(doc, ("year",), f"a preprint's year is its arXiv year ({arxiv_year}), not {rec.year}")
        return
    if arxiv_year is not None and not arxiv_year <= rec.year <= arxiv_year + 5:
        report.add(doc, ("year",), f"published in {rec.year}, but the arXiv id dates from {arxiv_year}")
    for text, loc in ((rec.venue, ("venue",)), (rec.venue_short or "", ("venue_short",))):
        for y in re.findall(r"(?<![0-9])(?:19|20)[0-9]{2}(?![0-9])", text):
            if int(y) != rec.year:
                report.add(doc, loc, f"the venue names the year {y}, the record {rec.year}")
    short = (rec.venue_short or "").split()[0].rstrip("W") if rec.venue_short else ""
    parity = _CALENDAR.get(short)
    if parity is not None and rec.year % 2 != parity:
        report.add(doc, ("year",), f"{short} is held only in {'odd' if parity else 'even'} years, not {rec.year}")


# ---------------------------------------------------------------------------------------
# across records
# ---------------------------------------------------------------------------------------


def _family(rec: MethodRecord, records: dict[str, MethodRecord]) -> str:
    """The root of ``rec``'s variant chain (cycles stop at the first repeat)."""
    seen = {rec.id}
    while rec.variant_of and rec.variant_of in records and rec.variant_of not in seen:
        rec = records[rec.variant_of]
        seen.add(rec.id)
    return rec.id


def _check_shared_code(items: list[Item], report: _Report) -> None:
    records = {rec.id: rec for rec, _ in items}
    by_code: dict[str, list[Item]] = defaultdict(list)
    for rec, doc in items:
        key = repo_key(rec.code) if rec.code else None
        if key:
            by_code[key].append((rec, doc))
    for sharing in by_code.values():
        if len(sharing) < 2:
            continue
        first = sharing[0][0]
        for rec, doc in sharing[1:]:
            same_paper = rec.title.casefold() == first.title.casefold()
            if not same_paper and _family(rec, records) != _family(first, records):
                report.add(doc, ("code",), f"'{rec.code}' is also the code of '{first.id}'; two records share code only "
                                           "when they cite the same paper or one is a variant of the other (set 'variant_of')")


def _check_aliases(items: list[Item], report: _Report) -> None:
    owner: dict[str, str] = {}
    for rec, doc in items:
        for loc, name in [(("id",), rec.id)] + [(("aliases", i), a) for i, a in enumerate(rec.aliases)]:
            key = _norm_name(name)
            if not key:
                continue
            other = owner.get(key)
            if other is not None and other != rec.id:
                report.add(doc, loc, f"'{name}' is, ignoring case and punctuation, a name of '{other}' too")
            owner.setdefault(key, rec.id)


def _check_variants(items: list[Item], report: _Report) -> None:
    records = {rec.id: rec for rec, _ in items}
    for rec, doc in items:
        base = records.get(rec.variant_of or "")
        for i, note in enumerate(rec.classification_notes):
            if not note.held_by and (base is None or note.alternative != (base.category or "baseline")):
                report.add(doc, ("classification_notes", i, "held_by"),
                           "say who files the method there (a reference or a record id); a note without one only "
                           "explains a variant_of sibling filed in the alternative category")
        if base is None:
            continue
        if _family(rec, records) == rec.id:  # the chain loops back
            report.add(doc, ("variant_of",), "variant_of forms a cycle")
            continue
        if rec.category != base.category:
            explained = any(n.alternative == (base.category or "baseline") for n in rec.classification_notes)
            if not explained:
                report.add(doc, ("category",), f"filed under {rec.category} while '{base.id}', which it is a variant of, is under "
                                               f"{base.category}; add a classification note with alternative {base.category} saying why")


def _check_changelog(part: Any, root: Path, records: dict[str, MethodRecord], report: _Report) -> None:
    ids = set(records)
    log, meta = part.changelog, part.meta
    if log is None or meta is None:
        return
    from vlmeft.kb.safe_yaml import load_yaml_document

    doc = load_yaml_document(root / "changelog.yaml")
    if log.releases[0].version != meta.version or log.releases[0].date != meta.released:
        report.add(doc, ("releases", 0), f"the newest release must be kb.yaml's ({meta.version}, {meta.released})")
    for r, release in enumerate(log.releases):
        for c, change in enumerate(release.changes):
            if change.record not in ids and "record" not in change.fields:
                report.add(doc, ("releases", r, "changes", c, "record"), f"unknown record '{change.record}'")
    from vlmeft.kb.changelog import LOCK_FILE, read_lock, unlogged

    lock = read_lock(root)
    if lock is None:
        return
    logged = {c.record for c in log.releases[0].changes}
    for rid in unlogged(records, lock, logged):
        what = ("is new" if rid not in lock["digests"] else "changed its category or facts")
        report.add(doc, ("releases", 0, "changes"),
                   f"record '{rid}' {what} since {LOCK_FILE} was written, but release {log.releases[0].version} "
                   "does not log it; add a change entry (then `vlmeft changelog lock` at release)")


def check_rules(items: Iterable[Item], part: Any, root: Path) -> list[VlmeftError]:
    """Every rule over every record; ``part`` holds the loaded base files (vocab, meta, changelog)."""
    items = list(items)
    report = _Report()
    code_repos = {_repo_root(k) for rec, _ in items if rec.code and (k := repo_key(rec.code))}
    for rec, doc in items:
        _check_sources(rec, doc, report)
        _check_unverified(rec, doc, report)
        _check_results(rec, doc, code_repos, report)
        _check_venue_year(rec, doc, report)
    _check_shared_code(items, report)
    _check_aliases(items, report)
    _check_variants(items, report)
    _check_changelog(part, root, {rec.id: rec for rec, _ in items}, report)
    return report.errors
