"""Bearer tokens: minting, hashing, parsing and checking.

Three kinds, one shape `<kind>_<id>_<secret>`:

- `gfk`: API keys (submitters, operators, admins),
- `gff`: factory tokens,
- `gfe`: one-time enrollment tokens.

The id (12 hex digits) names the stored record, so a token is checked with one point read
and one constant-time comparison; only the secret's hash is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal

__all__ = [
    "API_KEY",
    "ENROLLMENT_TOKEN",
    "FACTORY_TOKEN",
    "TokenKind",
    "hash_token",
    "mint",
    "parse_token",
    "verify",
]

TokenKind = Literal["gfk", "gff", "gfe"]

API_KEY: TokenKind = "gfk"
FACTORY_TOKEN: TokenKind = "gff"
ENROLLMENT_TOKEN: TokenKind = "gfe"

_KINDS: frozenset[str] = frozenset({API_KEY, FACTORY_TOKEN, ENROLLMENT_TOKEN})
# token_urlsafe uses [A-Za-z0-9_-], so the secret may itself contain '_': split twice only.
_TOKEN = re.compile(r"^(gf[kfe])_([0-9a-f]{12})_([A-Za-z0-9_-]{16,})$")


def mint(kind: TokenKind) -> tuple[str, str]:
    """A new token of `kind`.

    Returns:
        (token_id, token): the id to store the record under, and the full token to hand
        out once.

    Raises:
        ValueError: `kind` is not one of gfk, gff, gfe.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown token kind {kind!r}; use one of {', '.join(sorted(_KINDS))}")
    token_id = secrets.token_hex(6)
    return token_id, f"{kind}_{token_id}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """The hash stored in place of a token (SHA-256, hex).

    A fast hash is enough here: every token carries 256 bits from `secrets`, so there is
    no password-like guessable space for a slow KDF (bcrypt, scrypt) to protect, and a slow
    KDF would cost milliseconds on every authenticated request.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> tuple[TokenKind, str]:
    """The kind and id of a token, without checking its secret.

    Raises:
        ValueError: the text does not have the `<kind>_<id>_<secret>` shape.
    """
    match = _TOKEN.match(token.strip())
    if match is None:
        raise ValueError("malformed token: expected gfk_<id>_<secret>, gff_... or gfe_...")
    kind = match.group(1)
    if kind == API_KEY:
        return API_KEY, match.group(2)
    if kind == FACTORY_TOKEN:
        return FACTORY_TOKEN, match.group(2)
    return ENROLLMENT_TOKEN, match.group(2)


def verify(token: str, stored_hash: str | None) -> bool:
    """Whether `token` hashes to `stored_hash`, compared in constant time."""
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())
