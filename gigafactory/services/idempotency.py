"""Idempotent submits: an `Idempotency-Key` makes a retried submit return the job the first
one created instead of creating a second.

The key is scoped to the API key and the product: the job's id is derived from the three,
so the store's own uniqueness of a job id (and Temporal's of its workflow id) decides a
race between two submits with the same key, with no table of keys to keep. The job keeps
a digest of what was asked; the same key with a different request is refused.
"""

from __future__ import annotations

import hashlib
import json

from gigafactory.models import JobSpec
from gigafactory.services.errors import InvalidInput

__all__ = ["HEADER", "MAX_KEY_LENGTH", "check_key", "job_id_for", "request_digest"]

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def check_key(value: str) -> str:
    """The key as given, when it is 1 to 255 visible ASCII characters.

    Raises:
        InvalidInput: empty, too long, or a character outside visible ASCII.
    """
    if not value:
        raise InvalidInput(f"{HEADER} is empty; leave it out or give a key", field=HEADER)
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{HEADER} has {len(value)} characters; at most {MAX_KEY_LENGTH} are allowed",
            field=HEADER,
        )
    if bad := next((c for c in value if not "!" <= c <= "~"), None):
        raise InvalidInput(
            f"{HEADER} may hold visible ASCII characters only, not {bad!r}", field=HEADER
        )
    return value


def job_id_for(api_key_id: str, product_id: str, key: str) -> str:
    """The id of the job a submit with this key makes (12 hex digits, like any job id)."""
    material = "\n".join((api_key_id, product_id, key)).encode()
    return hashlib.sha256(material).hexdigest()[:12]


def request_digest(spec: JobSpec) -> str:
    """What a submit asked for, as a digest: equal specs, equal digests."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
