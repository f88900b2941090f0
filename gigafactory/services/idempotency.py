"""Idempotent submits: an `Idempotency-Key` makes a retried submit return the job the first
one created instead of creating a second.

The key is scoped to the API key and the product: the job's id is derived from the three,
so the store's own uniqueness of a job id (and Temporal's of its workflow id) decides a
race between two submits with the same key, with no table of keys to keep. The job keeps
a digest of what was asked; the same key with a different request is refused.

A submit writes the job before it starts its workflow. A repeat that finds the job but no
workflow waits up to `IN_PROGRESS_WAIT_S` for the submit in progress, and is answered
"retry" (503) if it is still going; once the job is older than `ABANDONED_AFTER`, which no
submit takes, the submit that wrote it is taken as dead (its API process was killed) and
the repeat finishes it: the children's projections, then the workflow.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from gigafactory.models import JobSpec
from gigafactory.services.errors import InvalidInput

__all__ = [
    "ABANDONED_AFTER",
    "HEADER",
    "IN_PROGRESS_WAIT_S",
    "MAX_KEY_LENGTH",
    "POLL_S",
    "check_key",
    "job_id_for",
    "request_digest",
]

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# How long a repeat waits for the first submit with its key to start the job's workflow.
IN_PROGRESS_WAIT_S = 5.0
POLL_S = 0.2
# A job this old without a workflow was written by a submit that died.
ABANDONED_AFTER = timedelta(seconds=30)


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
