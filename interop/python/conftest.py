"""Attach the tail of the `mandate serve` log to every failing interop test."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        server = getattr(item, "funcargs", {}).get("server")
        if server is not None and hasattr(server, "log_tail"):
            report.sections.append(("mandate serve log", server.log_tail()))
