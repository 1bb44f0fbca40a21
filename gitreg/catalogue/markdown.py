"""Markdown descriptions (``gitreg:description_md``) rendered safely.

The text is written by an endorser and shown to every visitor, so it is
treated as hostile: markdown-it-py's CommonMark renderer with raw HTML off
(a ``<script>`` or ``<img onerror=...>`` shows as text), links and images
only to ``http``, ``https``, ``mailto`` or relative addresses (no
``javascript:``, ``data:`` or ``vbscript:``), no attributes but the ones the
renderer writes itself. The pages' Content-Security-Policy forbids inline
script as a second line of defence.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

# A scheme is letters, digits, +, - and . before a colon; anything else is relative.
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")
_ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
# Browsers drop these from URLs before reading the scheme ("java\tscript:").
_IGNORED = re.compile(r"[\x00-\x20\x7f]")
MAX_MARKDOWN = 64 * 1024


def safe_url(url: str) -> bool:
    """Whether ``url`` may become an ``href`` or ``src``."""
    cleaned = _IGNORED.sub("", url)
    match = _SCHEME.match(cleaned)
    if match is None:
        return True  # relative (or protocol-relative): same scheme as the page
    return match.group(1).lower() in _ALLOWED_SCHEMES


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.validateLink = safe_url  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        # Links leave the catalogue: no referrer, no opener, no ranking credit.
        tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


@lru_cache(maxsize=4096)
def render(text: str | None) -> str:
    """Sanitised HTML for a Markdown description ("" for none).

    Cached: the images of a list often share their description.
    """
    if not text:
        return ""
    return str(_renderer().render(text[:MAX_MARKDOWN]))
