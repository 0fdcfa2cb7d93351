"""Plain-text pieces every layer shares: short lists in error messages, Markdown tables in reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def short_list(items: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` items, then how many more: messages stay readable for 300-key state dicts."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: set[int] | None = None) -> str:
    """A Markdown table; the columns whose index is in ``right`` are right-aligned (``---:``)."""
    rule = ["---:" if i in (right or set()) else "---" for i in range(len(headers))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in (headers, rule, *rows))
