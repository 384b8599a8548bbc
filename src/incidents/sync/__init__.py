"""Bi-directional ITSM sync: links, field mapping, ownership and conflict policies,
echo suppression, the conflict queue, drift detection and reconciliation.

Vendor-neutral: a vendor (ServiceNow, Jira) plugs in through the ports of
:mod:`incidents.sync.ports`; the SQL adapters live in :mod:`incidents.store`.
"""
