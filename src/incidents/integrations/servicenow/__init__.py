"""ServiceNow: incidents kept in step with the Table API's ``incident`` records."""

from __future__ import annotations

from incidents.integrations.provider import Provider
from incidents.integrations.servicenow.config import parse_entry

PROVIDER = Provider(name="servicenow", credentials=None, parse_connector=parse_entry)
