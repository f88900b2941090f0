"""`python -m api`: serve the API with settings from the environment (FLEET_*)."""

from __future__ import annotations

import logging

from api.app import serve
from gigafactory.settings import Settings


def main() -> None:
    """Serve until interrupted."""
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    serve(settings)


if __name__ == "__main__":
    main()
