"""Third-party HTTP logging is quiet unless FLEET_LOG_HTTP asks for it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gigafactory.settings import Settings
from launch.cli.context import HTTP_LOGGERS, configure_logging

# The loggers that flooded the dev stack's log, named as their libraries name them.
NOISY = (
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.cosmos",
    "httpx",
    "httpcore.connection",
    "uvicorn.access",
)


@pytest.fixture
def restored_levels() -> Iterator[None]:
    """configure_logging sets process-wide levels: put them back for the other tests."""
    names = ["", "temporalio", *HTTP_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_levels")
@pytest.mark.parametrize(
    ("log_http", "level", "expected"),
    [(None, "INFO", logging.WARNING), ("true", "DEBUG", logging.DEBUG)],
    ids=["quiet-by-default", "fleet-log-http"],
)
def test_http_loggers_are_quiet_unless_fleet_log_http_asks(
    monkeypatch: pytest.MonkeyPatch, log_http: str | None, level: str, expected: int
) -> None:
    if log_http is None:
        monkeypatch.delenv("FLEET_LOG_HTTP", raising=False)
    else:
        monkeypatch.setenv("FLEET_LOG_HTTP", log_http)
    settings = Settings()
    assert settings.log_http is (log_http is not None)
    logging.getLogger().setLevel(level)  # basicConfig leaves a configured root alone
    configure_logging(level, http=settings.log_http)
    for name in NOISY:
        if name.startswith("uvicorn") and log_http:
            continue  # uvicorn's own log config sets its parent logger's level (`serve api`)
        assert logging.getLogger(name).getEffectiveLevel() == expected, name
    if log_http:
        # Nothing forced: each follows its parent as any logger does.
        assert {logging.getLogger(name).level for name in HTTP_LOGGERS} == {logging.NOTSET}
    # Our own loggers keep the level asked for.
    assert logging.getLogger("launch.stack").getEffectiveLevel() == logging.getLevelName(level)
