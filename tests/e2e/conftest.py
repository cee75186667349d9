"""Fixtures for the end-to-end suite.

- artifacts: the launcher, the filter .wasm and Envoy must exist; every test
  that starts a gateway fails with the build command otherwise.
- stack (module scope): one IdP + upstream + gateway shared by a module; the
  module tunes it with a STACK dict of launch_stack() keyword arguments.
- gw: the module's stack with the upstream's record cleared, for one test.
- make_stack / gateway: factories that start stacks or bare gateways inside a
  test; all are stopped (and checked) at the test's teardown.
"""

import contextlib
import copy

import pytest

from gateway import Gateway, missing_artifacts
from stack import launch_stack


@pytest.fixture(scope="session")
def artifacts():
    missing = missing_artifacts()
    if missing:
        pytest.fail("the end-to-end suite needs:\n  " + "\n  ".join(missing), pytrace=False)


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, artifacts):
    options = copy.deepcopy(getattr(request.module, "STACK", {}))
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with launch_stack(workdir, **options) as s:
        yield s


@pytest.fixture
def gw(stack):
    stack.upstream.clear()
    return stack


@pytest.fixture
def make_stack(tmp_path, artifacts):
    with contextlib.ExitStack() as cleanup:
        count = 0

        def make(**options):
            nonlocal count
            count += 1
            return cleanup.enter_context(launch_stack(tmp_path / f"stack{count}", **options))

        yield make


@pytest.fixture
def gateway(tmp_path, artifacts):
    """make(start=True, **Gateway kwargs) -> Gateway; workdir defaults to a fresh tmp dir."""
    with contextlib.ExitStack() as cleanup:
        count = 0

        def make(start=True, **kw):
            nonlocal count
            count += 1
            kw.setdefault("workdir", tmp_path / f"gateway{count}")
            gateway = Gateway(**kw)
            cleanup.callback(gateway.stop)
            return gateway.start() if start else gateway

        yield make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for gateway in list(Gateway.running):
            report.sections.append((f"gateway on port {gateway.port}", gateway.log_tail(60)))
