"""Typed keys of the fleet's search attributes (Keyword), registered on the namespace.

Imported by workflows inside the sandbox, so this module does no I/O. The names match
`gigafactory.contracts.SEARCH_ATTRIBUTES`, which the dev server registers at start.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = [
    "FLEET_ENGINE",
    "FLEET_FACTORY_ID",
    "FLEET_PRIORITY",
    "FLEET_PRODUCT_ID",
    "FLEET_STAGE",
]

FLEET_PRODUCT_ID = SearchAttributeKey.for_keyword("FleetProductId")
FLEET_STAGE = SearchAttributeKey.for_keyword("FleetStage")
FLEET_PRIORITY = SearchAttributeKey.for_keyword("FleetPriority")
FLEET_FACTORY_ID = SearchAttributeKey.for_keyword("FleetFactoryId")
FLEET_ENGINE = SearchAttributeKey.for_keyword("FleetEngine")
