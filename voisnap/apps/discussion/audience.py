"""Who receives a run's events: the connections that called ``Subscribe(runId)``.

The group name is server-internal and tenant-qualified (``routing.router``,
``group_key``): a client only ever passes a run id, which ``Subscribe`` checks
belongs to the caller before it joins the group.
"""

from __future__ import annotations

from ...routing.router import GroupKey, group_key

PREFIX = "discussion/"


def run_group(run_id: str) -> str:
    """The group name (within the caller's tenant) of one run's subscribers."""
    return PREFIX + run_id


def run_key(tenant_id: str, run_id: str) -> GroupKey:
    return group_key(tenant_id, run_group(run_id))
