"""Who may do what: roles, product scope and the caller of an operation.

Every service applies these rules itself, so the API, the web UI and the CLI (through the
API) refuse the same things the same way. A key sees only its products: anything of
another product is "not found", exactly as if it did not exist (invariant 7), while a role
that is too low is "forbidden".
"""

from __future__ import annotations

from dataclasses import dataclass

from gigafactory.models import ApiKey, Factory, Role
from gigafactory.services.errors import Forbidden, NotFoundError

__all__ = [
    "ROLE_RANK",
    "Principal",
    "has_role",
    "product_not_found",
    "require_product",
    "require_role",
    "visible_products",
]

ROLE_RANK: dict[Role, int] = {Role.SUBMITTER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """Who calls: an API key or a factory (exactly one is set)."""

    key: ApiKey | None = None
    factory: Factory | None = None

    @property
    def actor(self) -> str:
        """How events name this caller: "api:<keyId>" or "factory:<id>"."""
        if self.key is not None:
            return f"api:{self.key.id}"
        assert self.factory is not None
        return f"factory:{self.factory.id}"


def has_role(key: ApiKey, role: Role) -> bool:
    """Whether `key`'s role includes `role` (each role includes the ones before it)."""
    return ROLE_RANK[key.role] >= ROLE_RANK[role]


def require_role(key: ApiKey, role: Role, doing: str | None = None) -> None:
    """Raise Forbidden unless `key` has at least `role`."""
    if has_role(key, role):
        return
    what = doing or "this"
    raise Forbidden(f"{what} needs the {role.value} role; API key {key.id} is a {key.role.value}")


def product_not_found(product_id: str, field: str = "productId") -> NotFoundError:
    """The one answer for a product that does not exist or that the caller may not see."""
    return NotFoundError(f"product {product_id} not found", field=field)


def require_product(key: ApiKey, product_id: str) -> None:
    """Raise NotFoundError unless `key` may see `product_id`."""
    if not key.may_see(product_id):
        raise product_not_found(product_id)


def visible_products(key: ApiKey, product_id: str | None = None) -> list[str] | None:
    """The products a listing may show: `[product_id]` (or `[]` if the key may not see it),
    every one of the key's products, or None for all products ("*")."""
    if product_id is not None:
        return [product_id] if key.may_see(product_id) else []
    return None if "*" in key.products else list(key.products)
