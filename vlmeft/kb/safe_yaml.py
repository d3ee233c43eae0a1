"""Hardened YAML reading: the only way the project turns YAML text into data.

What it refuses, and why:
- anchors and aliases, all of them: records never need them, and refusing them at
  compose time makes alias bombs ("billion laughs") impossible rather than merely slow;
- any tag outside plain YAML scalars, lists and maps (``!!python/...``, ``!!binary``,
  custom ``!tags``, merge keys): nothing in a record can construct an object;
- files over a size cap, empty files, text that is not UTF-8, more than one document,
  nesting deeper than a bound, duplicate or non-string mapping keys.

Every value's line is kept (1-based), keyed by its path inside the document, so schema
errors can say ``methods/coop.yaml:12 field 'year'``.
"""

from __future__ import annotations

import datetime
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vlmeft.errors import VlmeftError

MAX_BYTES = 1_000_000  # per file; the largest record is a few kB
MAX_DEPTH = 32  # nesting of lists/maps; records use about 4

_YAML = "tag:yaml.org,2002:"
# Tags a document may carry: the resolver's implicit tags for plain scalars, lists and maps.
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_SEQ_TAG = _YAML + "seq"
_MAP_TAG = _YAML + "map"

Path_ = tuple[str | int, ...]  # a value's location: keys and list indices from the root


@dataclass
class YamlDocument:
    """Parsed data plus the 1-based line of every value (``()`` = the root)."""

    data: Any
    where: str  # how to name the source in messages (a path as the user gave it)
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, loc: Path_) -> int | None:
        """Line of ``loc``, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]

    def at(self, loc: Path_ = ()) -> str:
        """``file:line`` for ``loc``."""
        line = self.line_of(loc)
        return f"{self.where}:{line}" if line else self.where


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses anchors, aliases and deep nesting.

    Only composition is used: nodes are turned into data by :func:`_construct`, which
    accepts only the standard tags, so no constructor (safe or not) ever runs on a tag.
    """

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self._where = where
        self._depth = 0

    def _refuse(self, message: str, mark: Any) -> VlmeftError:
        return VlmeftError(message, where=f"{self._where}:{mark.line + 1}")

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise self._refuse(
                f"YAML aliases are not allowed (found *{event.anchor}); write the value out",
                event.start_mark,
            )
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise self._refuse(
                f"YAML anchors are not allowed (found &{event.anchor}); write the value out",
                event.start_mark,
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._refuse(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


def _construct(node: Node, loc: Path_, doc: YamlDocument, loader: _StrictLoader) -> Any:
    line = node.start_mark.line + 1
    doc.lines[loc] = line
    where = f"{doc.where}:{line}"
    if isinstance(node, ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            raise VlmeftError(f"YAML tag '{node.tag}' is not allowed (plain values only)", where=where)
        if node.tag == _YAML + "timestamp":
            return node.value  # dates stay text: the schema has no date fields
        try:
            value = loader.construct_object(node, deep=False)  # SafeConstructor: str/int/float/bool/None only
        except ValueError:  # an integer past Python's int/str digit limit (4300 digits)
            raise VlmeftError(f"number with {len(node.value)} characters is too long", where=where) from None
        if isinstance(value, (datetime.date, bytes)):  # pragma: no cover - excluded by the tag check
            raise VlmeftError("unexpected YAML value type", where=where)
        return value
    if isinstance(node, SequenceNode):
        if node.tag != _SEQ_TAG:
            raise VlmeftError(f"YAML tag '{node.tag}' is not allowed on a list", where=where)
        return [_construct(item, loc + (i,), doc, loader) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        if node.tag != _MAP_TAG:
            raise VlmeftError(f"YAML tag '{node.tag}' is not allowed on a mapping", where=where)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_where = f"{doc.where}:{key_node.start_mark.line + 1}"
            if not isinstance(key_node, ScalarNode) or key_node.tag != _YAML + "str":
                if key_node.tag == _YAML + "merge":
                    raise VlmeftError("YAML merge keys (<<) are not allowed", where=key_where)
                raise VlmeftError(f"mapping keys must be plain strings, got {key_node.tag}", where=key_where)
            key = key_node.value
            if key in out:
                raise VlmeftError(f"duplicate key '{key}'", where=key_where)
            out[key] = _construct(value_node, loc + (key,), doc, loader)
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1  # point at the key, not the value
        return out
    raise VlmeftError("unsupported YAML node", where=where)  # pragma: no cover


def parse_yaml(text: str, where: str) -> YamlDocument:
    """Parse one YAML document from ``text``; ``where`` names it in errors."""
    if not text.strip():
        raise VlmeftError("file is empty", where=where)
    try:
        loader = _StrictLoader(text, where)
    except yaml.reader.ReaderError as err:  # a control character in the raw text
        line = text[: err.position].count("\n") + 1
        raise VlmeftError(f"character U+{err.character:04X} is not allowed in YAML text", where=f"{where}:{line}") from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.composer.ComposerError as err:  # e.g. a second document
            mark = err.problem_mark or err.context_mark
            line = f":{mark.line + 1}" if mark else ""
            raise VlmeftError(f"{err.problem or err}; one YAML document per file", where=f"{where}{line}") from None
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = f":{mark.line + 1}" if mark else ""
            problem = err.problem or "invalid YAML"
            context = f" {err.context}" if err.context else ""
            raise VlmeftError(f"malformed YAML: {problem}{context}", where=f"{where}{line}") from None
        except yaml.YAMLError as err:  # pragma: no cover - every YAMLError above is marked
            raise VlmeftError(f"malformed YAML: {' '.join(str(err).split())}", where=where) from None
        except RecursionError:
            raise VlmeftError("YAML nesting too deep", where=where) from None
        if root is None:
            raise VlmeftError("file holds no YAML document (only comments or blank)", where=where)
        doc = YamlDocument(data=None, where=where)
        doc.data = _construct(root, (), doc, loader)
        return doc
    finally:
        loader.dispose()


def read_text(path: Path, where: str | None = None, *, max_bytes: int = MAX_BYTES) -> str:
    """Read ``path`` as UTF-8 text, with the size cap and clear errors."""
    where = where or str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise VlmeftError("not a regular file", where=where)
        size = info.st_size
        if size > max_bytes:
            raise VlmeftError(f"file is {size} bytes, over the {max_bytes}-byte limit", where=where)
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise VlmeftError("no such file", where=where) from None
    except IsADirectoryError:
        raise VlmeftError("is a directory, expected a YAML file", where=where) from None
    except OSError as err:
        raise VlmeftError(f"cannot read: {err.strerror}", where=where) from None
    if len(raw) > max_bytes:  # grew since stat
        raise VlmeftError(f"file is over the {max_bytes}-byte limit", where=where)
    if not raw:
        raise VlmeftError("file is empty", where=where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise VlmeftError(f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})", where=f"{where}:{line}") from None
    return text.removeprefix("\ufeff")


def load_yaml_document(path: Path | str, where: str | None = None, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Read and parse one YAML file, keeping line numbers."""
    path = Path(path)
    where = where or display_path(path)
    return parse_yaml(read_text(path, where, max_bytes=max_bytes), where)


def safe_load_yaml(path: Path | str, *, max_bytes: int = MAX_BYTES) -> Any:
    """The data in one YAML file, read under every rule in this module's docstring."""
    return load_yaml_document(path, max_bytes=max_bytes).data


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
