"""People across a vendor: our assignee ids are people's emails, a vendor names its
users by its own id (ServiceNow ``sys_user`` sys_id, Jira Cloud accountId).

Each client owns one :class:`VendorPeople` built on its two lookups; answers found
are kept (both ways, bounded) so a poll of many tickets with the same assignee asks
the vendor once. Misses are kept only for a short while (:data:`MISS_SECONDS`): a
person the vendor will not name (a hidden email) on many tickets costs one lookup per
while, not one per ticket per poll, and a user created or made visible later is found
once the while has passed.

The relay, the poller and webhook handlers share a client, so the caches are locked.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

# People remembered per client; each entry is two short strings.
DEFAULT_CAPACITY = 2048
# How long a lookup that found nobody is believed before the vendor is asked again.
MISS_SECONDS = 300.0

_V = TypeVar("_V")

# local@domain.tld with no whitespace, control characters or ``^`` (which joins
# conditions in a ServiceNow encoded query): anything else is never sent to a vendor
# as an email to look up.
_PLAIN_EMAIL = re.compile(
    r"[^@\s\x00-\x1f\x7f^]+@[^@\s\x00-\x1f\x7f^.]+(\.[^@\s\x00-\x1f\x7f^.]+)+"
)


def is_plain_email(value: str) -> bool:
    """Whether ``value`` has the shape of one plain email address."""
    return _PLAIN_EMAIL.fullmatch(value) is not None


class PersonUnmapped(LookupError):
    """A person who cannot be named on the other side; the message says why."""


class _Bounded(Generic[_V]):
    """A least-recently-used map of at most ``capacity`` entries, safe across threads."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> _V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: _V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class _Misses:
    """Lookups that found nobody, each with its reason, believed for ``seconds``."""

    def __init__(self, capacity: int, seconds: float, clock: Callable[[], float]) -> None:
        self._items: _Bounded[tuple[float, str]] = _Bounded(capacity)
        self._seconds = seconds
        self._clock = clock

    def check(self, key: str) -> None:
        """Raise :class:`PersonUnmapped` again for a miss still believed."""
        found = self._items.get(key)
        if found is None:
            return
        until, reason = found
        if self._clock() < until:
            raise PersonUnmapped(reason)
        self._items.drop(key)

    def add(self, key: str, error: PersonUnmapped) -> None:
        self._items.put(key, (self._clock() + self._seconds, str(error)))

    def forget(self, key: str) -> None:
        self._items.drop(key)


class VendorPeople:
    """Email <-> vendor user id for one vendor connection, with a bounded cache.

    ``find_by_email`` returns the vendor id of the user with that email;
    ``find_email`` the email of a vendor user. Both raise :class:`PersonUnmapped`
    (with the reason) when there is no answer.
    """

    def __init__(
        self,
        find_by_email: Callable[[str], str],
        find_email: Callable[[str], str],
        capacity: int = DEFAULT_CAPACITY,
        *,
        miss_seconds: float = MISS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find_by_email = find_by_email
        self._find_email = find_email
        self._ids: _Bounded[str] = _Bounded(capacity)
        self._emails: _Bounded[str] = _Bounded(capacity)
        self._id_misses = _Misses(capacity, miss_seconds, clock)
        self._email_misses = _Misses(capacity, miss_seconds, clock)

    def remember(self, vendor_id: str, email: str) -> None:
        """Keep a pair the vendor told us in passing (an issue's assignee object)."""
        self._ids.put(email.lower(), vendor_id)
        self._emails.put(vendor_id, email.lower())
        self._id_misses.forget(email.lower())
        self._email_misses.forget(vendor_id)

    def vendor_id(self, email: str) -> str:
        """The vendor's id of the person with ``email``."""
        key = email.lower()
        found = self._ids.get(key)
        if found is None:
            self._id_misses.check(key)
            try:
                found = self._find_by_email(email)
            except PersonUnmapped as exc:
                self._id_misses.add(key, exc)
                raise
            self.remember(found, key)
        return found

    def email(self, vendor_id: str) -> str:
        """The email (lower case, as subject ids are kept) of a vendor user."""
        found = self._emails.get(vendor_id)
        if found is None:
            self._email_misses.check(vendor_id)
            try:
                found = self._find_email(vendor_id).lower()
            except PersonUnmapped as exc:
                self._email_misses.add(vendor_id, exc)
                raise
            self.remember(vendor_id, found)
        return found

    def as_email(self, person: str) -> str:
        """``person`` as an email: an email as it is (lower case), a vendor id
        translated (no vendor id has the shape of an email)."""
        return person.lower() if is_plain_email(person) else self.email(person)

    def __len__(self) -> int:
        return max(len(self._ids), len(self._emails))
