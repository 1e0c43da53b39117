"""Fixtures for the end-to-end tests: one stack (three service processes, started
exactly as `make up` starts them) shared by the tests whose faults do not
interfere, and a real Prometheus scraping it."""

from __future__ import annotations

import pytest

from .support import start_prometheus, start_stack, stop_prometheus, stop_stack


@pytest.fixture(scope="module")
def e2e(infra, tmp_path_factory):
    e = start_stack(tmp_path_factory.mktemp("e2e-stack"), bootstrap=infra.bootstrap_servers,
                    redis_url=infra.redis_url)
    yield e
    stop_stack(e)


@pytest.fixture(scope="module")
def prometheus(e2e, tmp_path_factory):
    p = start_prometheus(tmp_path_factory.mktemp("prometheus"), e2e.stack)
    yield p
    stop_prometheus(p)
