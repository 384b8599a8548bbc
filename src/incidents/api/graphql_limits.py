"""What one GraphQL operation may ask for: its size, depth and aliases, and no NUL.

Every field of the schema is cheap alone; an operation becomes expensive by
repeating fields (aliases), nesting them, or simply being huge. Each limit is a
setting (``graphql_max_*``); refused operations get a GraphQL error saying which
limit they passed, before anything is resolved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from graphql import GraphQLError, StringValueNode, Visitor, visit
from graphql.language.visitor import BREAK
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from incidents.api.nul import NUL, REFUSED, nul_path
from incidents.config import Settings

# GraphQL request documents (query, variables, extensions) are shallow: this schema's
# deepest input is a list of enum values. Deeper JSON is refused before decoding.
MAX_JSON_DEPTH = 32


class _FindNul(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if NUL in node.value:
            self.found = True
            return BREAK
        return None


class RefuseNul(SchemaExtension):
    """NUL in an argument is refused, as in REST paths and queries (see api/nul.py).

    Without this, PostgreSQL fails the resolver's query (and its message would reach
    the client) while SQLite searches for the value.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        where = nul_path(context.variables or {})
        if where is not None:
            raise GraphQLError(f"variable {where} {REFUSED}")
        if context.graphql_document is not None:
            finder = _FindNul()
            visit(context.graphql_document, finder)
            if finder.found:
                raise GraphQLError(f"a string argument {REFUSED}")
        yield


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the schema extensions enforcing the configured limits (one set
    per operation: an extension holds the operation it is working on)."""
    return [
        # Applied while parsing: a huge document is refused before it is built.
        partial(MaxTokensLimiter, max_token_count=settings.graphql_max_tokens),
        partial(QueryDepthLimiter, max_depth=settings.graphql_max_depth),
        partial(MaxAliasesLimiter, max_alias_count=settings.graphql_max_aliases),
        RefuseNul,
    ]
