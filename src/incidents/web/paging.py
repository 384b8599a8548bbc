"""Paging the console's lists with the readers' keyset cursors.

A list page is asked for with the reader's opaque ``cursor`` (absent on the first
page) and the same filters as the page before: a cursor is bound to its filters, and
the readers refuse one reused with others. Readers only page forward, so "Previous"
is the cursor of the page before, carried in ``back`` (one value per page before the
current one, oldest first; empty for the first page), at most :data:`MAX_TRAIL` deep.
The links carry cursors and filters only, never a credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from incidents.log.query import InvalidQuery

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# How many pages back "Previous" can go; beyond, "First" still does.
MAX_TRAIL = 20
_PAGING = frozenset({"cursor", "back", "limit"})


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which page of a list is asked for."""

    cursor: str | None
    back: tuple[str, ...]
    limit: int

    @classmethod
    def of(cls, params: QueryParams) -> PageRequest:
        """The page the query asks for; :class:`InvalidQuery` for a bad size."""
        raw = params.get("limit")
        if raw is None or raw == "":
            limit = DEFAULT_PAGE_SIZE
        else:
            try:
                limit = int(raw)
            except ValueError:
                raise InvalidQuery("limit", f"must be a whole number, got {raw[:20]!r}") from None
            if not 1 <= limit <= MAX_PAGE_SIZE:
                raise InvalidQuery("limit", f"must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        back = tuple(params.getlist("back"))[-MAX_TRAIL:]
        return cls(params.get("cursor") or None, back, limit)


@dataclass(frozen=True, slots=True)
class PageLinks:
    """The links of a list page (None where there is nowhere to go)."""

    first: str | None
    previous: str | None
    next: str | None


def page_links(
    path: str, params: QueryParams, asked: PageRequest, next_cursor: str | None
) -> PageLinks:
    """Links to the first, previous and next page, keeping the page's filters."""
    filters = [(k, v) for k, v in params.multi_items() if k not in _PAGING]
    if asked.limit != DEFAULT_PAGE_SIZE:
        filters.append(("limit", str(asked.limit)))

    def link(cursor: str | None, back: tuple[str, ...]) -> str:
        pairs = [*filters, *(("back", b) for b in back)]
        if cursor:
            pairs.append(("cursor", cursor))
        query = urlencode(pairs)
        return f"{path}?{query}" if query else path

    first = link(None, ()) if asked.cursor else None
    # Without a trail (pages further back than MAX_TRAIL) only "First" is offered.
    previous = link(asked.back[-1] or None, asked.back[:-1]) if asked.back else None
    following = None
    if next_cursor is not None:
        following = link(next_cursor, (*asked.back, asked.cursor or "")[-MAX_TRAIL:])
    return PageLinks(first, previous, following)
