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
def test_http_loggers_are_quiet_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_LOG_HTTP", raising=False)
    settings = Settings()
    assert settings.log_http is False
    logging.getLogger().setLevel(logging.INFO)
    configure_logging("INFO", http=settings.log_http)
    for name in NOISY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    # Our own loggers keep the level asked for.
    assert logging.getLogger("launch.stack").isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("restored_levels")
def test_fleet_log_http_lets_them_log_at_the_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_LOG_HTTP", "true")
    settings = Settings()
    assert settings.log_http is True
    logging.getLogger().setLevel(logging.DEBUG)
    configure_logging("DEBUG", http=settings.log_http)
    for name in NOISY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG, name
