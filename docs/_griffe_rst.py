"""A Griffe extension that lets mkdocstrings render smproto's reStructuredText-flavoured
docstrings (the API reference of the documentation site; see ``mkdocs.yml``).

The source keeps the Sphinx conventions Python programmers read in their editors; this
extension translates them when the site is built, and never touches the code:

- roles (``:class:`~smproto.State```, ``:meth:`send_audio```, ``:data:``, ``:attr:``,
  ``:func:``, ``:mod:``, ``:exc:``, ``:obj:``) become *optional* cross-references: a link
  when the target is documented on the site, plain code otherwise (so an unresolvable
  name never fails ``mkdocs build --strict``). Names are resolved like Sphinx does:
  in the object's own scope, then its parents', then as a full dotted path;
- ``#:`` comments above an attribute become its docstring (Sphinx's attribute comments);
- ```text <https://...>`_`` links become Markdown links;
- a paragraph ending in ``::`` (a literal block follows) ends in ``:``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|meth|func|attr|data|mod|exc|obj|const):`([^`]+)`")
_LINK = re.compile(r"`([^`<]+?)\s*<(https?://[^>]+)>`__?")
_LITERAL = re.compile(r"(\S)::$", re.M)
_BARE_LITERAL = re.compile(r"^(\s*)::$", re.M)


def _members(obj: Any) -> dict[str, Any]:
    try:
        return dict(obj.members)
    except Exception:  # an alias that does not resolve
        return {}


def _canonical(obj: Any) -> str:
    """The path the documented object is registered under (aliases followed)."""
    if isinstance(obj, griffe.Alias):
        try:
            return str(obj.final_target.path)
        except Exception:
            return str(obj.target_path)
    return str(obj.path)


def _lookup(scope: Any, dotted: str) -> Any | None:
    parts = dotted.split(".")
    current = scope
    for part in parts:
        found = _members(current).get(part)
        if found is None:
            return None
        current = found
    return current


def _resolve(obj: Any, name: str, package: Any) -> str:
    """The identifier ``name`` refers to, seen from ``obj``'s docstring."""
    if name.startswith("."):  # relative to the module (Sphinx: the current package)
        module = obj if obj.is_module else obj.module
        base = module if module.is_package else module.parent
        found = _lookup(base, name.lstrip("."))
        return _canonical(found) if found is not None else name.lstrip(".")
    scope = obj
    while scope is not None:
        found = _lookup(scope, name)
        if found is not None:
            return _canonical(found)
        scope = scope.parent
    head, _, rest = name.partition(".")
    if head == package.name and rest:
        found = _lookup(package, rest)
        if found is not None:
            return _canonical(found)
    return name


def _convert(text: str, obj: Any, package: Any) -> str:
    def role(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        shown = target
        if target.startswith("~"):
            target = target[1:]
            shown = target.rsplit(".", 1)[-1]
        shown = shown.lstrip(".")
        identifier = _resolve(obj, target, package)
        return (
            f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(shown)}</code></autoref>"
        )

    text = _ROLE.sub(role, text)
    text = _LINK.sub(r"[\1](\2)", text)
    text = _BARE_LITERAL.sub("", text)
    return _LITERAL.sub(r"\1:", text)


def _comments_above(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment lines right above line ``lineno`` (1-based), if any."""
    found: list[str] = []
    index = lineno - 2
    while index >= 0:
        line = lines[index].strip()
        if not line.startswith("#:"):
            break
        found.append(line[2:].strip())
        index -= 1
    return "\n".join(reversed(found)) if found else None


def _comment_docstring(attribute: Any) -> str | None:
    """The ``#:`` comment of an attribute: above its definition, or, for an instance
    attribute that the class body also declares (``state: State``), above that."""
    try:
        lines = list(attribute.module.lines)
    except Exception:
        return None
    if not lines or not attribute.lineno:
        return None
    comment = _comments_above(lines, attribute.lineno)
    parent = attribute.parent
    if comment is None and parent is not None and parent.is_class and parent.lineno:
        declaration = re.compile(rf"^\s+{re.escape(attribute.name)}\s*:")
        end = parent.endlineno or len(lines)
        body_indent: int | None = None
        for number in range(parent.lineno + 1, end + 1):
            line = lines[number - 1]
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if body_indent is None:
                body_indent = indent
            if indent == body_indent and declaration.match(line):
                return _comments_above(lines, number)
    return comment


class RstDocstrings(griffe.Extension):
    """Translate reST conventions in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, pkg, set())

    def _walk(self, obj: Any, package: Any, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.is_attribute and obj.docstring is None:
            comment = _comment_docstring(obj)
            if comment is not None:
                obj.docstring = griffe.Docstring(comment, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = _convert(obj.docstring.value, obj, package)
        for member in obj.members.values():
            if isinstance(member, griffe.Alias):
                continue  # documented where it is defined
            self._walk(member, package, seen)
