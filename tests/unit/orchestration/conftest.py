"""Shared fixtures of the orchestration unit tests."""

import pytest


@pytest.fixture
def live_instance():
    """Resolving a job needs a current Dagster instance: one that an earlier test left entered may leave
    its dead state storage current when it is collected (seen after the orchestration tests), so
    collect it first and resolve inside a live ephemeral one."""
    import gc

    import dagster as dg

    gc.collect()
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance
