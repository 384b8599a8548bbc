"""People across a vendor: our assignee ids are people's emails, a vendor names its
users by its own id (ServiceNow ``sys_user`` sys_id, Jira Cloud accountId).

Each client owns one :class:`VendorPeople` built on its two lookups; answers found
are kept (both ways, bounded) so a poll of many tickets with the same assignee asks
the vendor once. Misses are not kept: a user created or made visible later is found
on the next try.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

# People remembered per client; each entry is two short strings.
DEFAULT_CAPACITY = 2048


class PersonUnmapped(LookupError):
    """A person who cannot be named on the other side; the message says why."""


class _Bounded:
    """A least-recently-used map of at most ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: str) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


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
    ) -> None:
        self._find_by_email = find_by_email
        self._find_email = find_email
        self._ids = _Bounded(capacity)
        self._emails = _Bounded(capacity)

    def remember(self, vendor_id: str, email: str) -> None:
        """Keep a pair the vendor told us in passing (an issue's assignee object)."""
        self._ids.put(email.lower(), vendor_id)
        self._emails.put(vendor_id, email.lower())

    def vendor_id(self, email: str) -> str:
        """The vendor's id of the person with ``email``."""
        key = email.lower()
        found = self._ids.get(key)
        if found is None:
            found = self._find_by_email(email)
            self.remember(found, key)
        return found

    def email(self, vendor_id: str) -> str:
        """The email (lower case, as subject ids are kept) of a vendor user."""
        found = self._emails.get(vendor_id)
        if found is None:
            found = self._find_email(vendor_id).lower()
            self.remember(vendor_id, found)
        return found

    def __len__(self) -> int:
        return max(len(self._ids), len(self._emails))
