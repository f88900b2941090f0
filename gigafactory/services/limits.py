"""Size limits: what one request may carry, checked before anything is stored.

Each limit is a setting (`FLEET_MAX_*`, docs/operations.md). Too many bytes is `TooLarge`
(413), too many entries or too long a page is `InvalidInput` (422); every message names the
field, the size and the setting to raise. The HTTP body itself is bounded earlier, by the
API's request-size middleware (`FLEET_MAX_REQUEST_BYTES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from gigafactory.models import JobSpec
from gigafactory.services.errors import InvalidInput, TooLarge
from gigafactory.settings import Settings
from gigafactory.store.backend import StoreError

__all__ = [
    "check_labels",
    "check_log_chunk",
    "check_page_size",
    "check_spec_sizes",
    "continuation_checked",
]


def _size(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def check_page_size(settings: Settings, limit: int, field: str = "limit") -> int:
    """`limit` if a list may return that many items at once.

    Raises:
        InvalidInput: over FLEET_MAX_PAGE_SIZE.
    """
    if limit > settings.max_page_size:
        raise InvalidInput(
            f"{field} {limit} is over the largest page, {settings.max_page_size} "
            "(FLEET_MAX_PAGE_SIZE): page with `continuation` instead",
            field=field,
        )
    return limit


@contextmanager
def continuation_checked() -> Iterator[None]:
    """Around reading a page: a continuation token the store cannot read is the caller's
    mistake (422 naming it), not a server error.

    Raises:
        InvalidInput: the token is not one a listing returned.
    """
    try:
        yield
    except StoreError as err:
        if type(err) is not StoreError:  # NotFound & co. are not about the token
            raise
        raise InvalidInput(
            f"invalid continuation token ({err}): pass the one the previous page returned "
            "with the same filters",
            field="continuation",
        ) from None


def check_labels(settings: Settings, labels: Iterable[str], field: str) -> None:
    """A list of labels (or capabilities): how many, and how long each is.

    Raises:
        InvalidInput: more than FLEET_MAX_LABELS entries.
        TooLarge: one longer than FLEET_MAX_LABEL_BYTES.
    """
    entries = list(labels)
    if len(entries) > settings.max_labels:
        raise InvalidInput(
            f"{field} has {len(entries)} entries; the limit is {settings.max_labels} "
            "(FLEET_MAX_LABELS)",
            field=field,
        )
    for entry in entries:
        size = _size(entry)
        if size > settings.max_label_bytes:
            raise TooLarge(
                f"{field} entry {entry[:40]!r}... is {size} bytes; the limit is "
                f"{settings.max_label_bytes} bytes (FLEET_MAX_LABEL_BYTES)",
                field=field,
            )


def _check_label_map(settings: Settings, labels: Mapping[str, str], field: str) -> None:
    check_labels(settings, labels.keys(), field)
    check_labels(settings, labels.values(), field)


def check_spec_sizes(settings: Settings, spec: JobSpec, where: str = "") -> None:
    """A job's prompt, labels, capabilities and preferred labels, and its children's.

    Raises:
        TooLarge: a prompt over FLEET_MAX_PROMPT_BYTES, a label over FLEET_MAX_LABEL_BYTES.
        InvalidInput: more labels than FLEET_MAX_LABELS.
    """
    size = _size(spec.prompt)
    if size > settings.prompt_limit:
        raise TooLarge(
            f"{where}prompt is {size} bytes; the limit is {settings.prompt_limit} bytes "
            "(FLEET_MAX_PROMPT_BYTES)",
            field=f"{where}prompt",
        )
    _check_label_map(settings, spec.labels, f"{where}labels")
    check_labels(settings, spec.capabilities, f"{where}capabilities")
    check_labels(settings, spec.preferred_labels, f"{where}preferredLabels")
    for child in spec.children:
        check_spec_sizes(settings, child.spec, f"{where}children.{child.id}.")


def check_log_chunk(settings: Settings, text: str) -> None:
    """One log report.

    Raises:
        TooLarge: over FLEET_MAX_LOG_CHUNK_BYTES.
    """
    size = _size(text)
    if size > settings.max_log_chunk_bytes:
        raise TooLarge(
            f"log chunk is {size} bytes; the limit is {settings.max_log_chunk_bytes} bytes "
            "(FLEET_MAX_LOG_CHUNK_BYTES): send it in smaller chunks",
            field="text",
        )
