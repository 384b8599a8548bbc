"""Commands: changes decided under the log lock, on the state the transaction sees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from incidents.log.session import AppendSession


class Rejected(Exception):
    """A command refused what it was asked, before appending anything.

    Fails only its own submission; the rest of the group commits.
    """


class Command(Protocol):
    """A change decided under the log lock, on the state the transaction sees."""

    def execute(self, session: AppendSession) -> Any:
        """Append events through ``session.emit``; raise :class:`Rejected` to refuse."""
        ...


@runtime_checkable
class KeyedCommand(Command, Protocol):
    """A command that knows before it runs which dedupe keys it will look up.

    They are looked up with the group's own, before the log lock where the backend
    allows it, which shortens the time the lock is held.
    """

    @property
    def dedupe_keys(self) -> Sequence[tuple[str, str]]: ...
