"""Forms of the web control plane: what a person typed -> what the services take, and the
services' refusals -> a message beside the field they name.

The submit form takes job fields, a job-spec file (pasted or uploaded), or both (the fields
then override the file's columns, as on the API). A refusal names its field (`field` of a
domain error, the parser's column, a validation error's location); it is shown at the
form field the person filled in for it, else at the spec they pasted, else above the form.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from api.ui.outcome import message_of
from gigafactory.jobspec import JobSpecError
from gigafactory.models import KNOWN_ENGINES, Priority, Stage
from gigafactory.services.errors import ServiceError
from gigafactory.services.specs import Submission

__all__ = [
    "FORM_ERROR",
    "IDEMPOTENCY_FIELD",
    "JobFilters",
    "SubmitForm",
    "errors_at_fields",
    "parse_submit_form",
]

# Where an error that names no form field is shown.
FORM_ERROR: Final = "_form"
# The spec file (pasted or uploaded) is one field of the form.
SPEC: Final = "spec"
SPEC_FILE: Final = "specFile"
# The dialog's hidden Idempotency-Key.
IDEMPOTENCY_FIELD: Final = "idempotencyKey"

# Form field -> how it is parsed: text, a list (comma-separated), a number or a JSON object.
_FIELDS: Final[dict[str, str]] = {
    "productId": "text",
    "engine": "text",
    "priority": "text",
    "title": "text",
    "prompt": "text",
    "timeout": "text",
    "lock": "text",
    "capabilities": "list",
    "estimatedCostUsd": "number",
    "params": "json",
}
# Other names of a form field, as the parser or a validation error spells them (normalised).
_ALIASES: Final[dict[str, str]] = {
    "product": "productId",
    "productid": "productId",
    "timeouts": "timeout",
    "cost": "estimatedCostUsd",
    "budget": "estimatedCostUsd",
    "estimatedcostusd": "estimatedCostUsd",
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def form_field(name: str | None) -> str | None:
    """The form field a field, column or location name means, if the form has one."""
    if not name:
        return None
    first = _norm(str(name).split(".")[0])
    for candidate in _FIELDS:
        if _norm(candidate) == first:
            return candidate
    return _ALIASES.get(first)


@dataclass
class SubmitForm:
    """A filled-in submit form: what was typed (to show again) and what it means."""

    values: dict[str, str] = field(default_factory=dict)
    spec_text: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # One per rendered dialog, sent back as a hidden field: the same dialog submitted twice
    # (a double click, a resend after a lost answer) makes one job.
    idempotency_key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def submission(self) -> Submission:
        """The fields given (camelCase, empty ones left out) and the spec file."""
        fields: dict[str, Any] = {}
        for name, kind in _FIELDS.items():
            raw = self.values.get(name, "").strip()
            if not raw:
                continue
            if kind == "list":
                fields[name] = [item.strip() for item in raw.split(",") if item.strip()]
            elif kind == "number":
                fields[name] = self._number(name, raw)
            elif kind == "json":
                fields[name] = self._json(name, raw)
            else:
                fields[name] = raw
        if self.errors:
            raise FormInvalid(self.errors)
        return Submission(fields=fields, spec_text=self.spec_text)

    def _number(self, name: str, raw: str) -> float | None:
        try:
            return float(raw.removeprefix("$"))
        except ValueError:
            self.errors[name] = f"{raw!r} is not a number (e.g. 0.25)"
            return None

    def _json(self, name: str, raw: str) -> dict[str, Any] | None:
        try:
            value = json.loads(raw)
        except ValueError as err:
            self.errors[name] = f'not JSON ({err}): write an object, e.g. {{"durationS": 2}}'
            return None
        if not isinstance(value, dict):
            self.errors[name] = 'write a JSON object, e.g. {"durationS": 2}'
            return None
        return value


class FormInvalid(ValueError):
    """The form cannot even be read as a submission (bad number, bad JSON, bad file)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


async def parse_submit_form(form: FormData, max_bytes: int) -> SubmitForm:
    """The submit form as typed; a spec file upload counts as the pasted spec."""
    parsed = SubmitForm()
    key = form.get(IDEMPOTENCY_FIELD)
    if isinstance(key, str) and key:
        parsed.idempotency_key = key
    for name in (*_FIELDS, SPEC):
        value = form.get(name)
        if isinstance(value, str):
            parsed.values[name] = value
    pasted = parsed.values.get(SPEC, "")
    upload = form.get(SPEC_FILE)
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            parsed.errors[SPEC_FILE] = f"the file is larger than {max_bytes} bytes"
        elif pasted.strip():
            parsed.errors[SPEC_FILE] = "give the job spec as a file or pasted, not both"
        else:
            try:
                parsed.values[SPEC] = pasted = data.decode()
            except UnicodeDecodeError:
                parsed.errors[SPEC_FILE] = "the file is not UTF-8 text"
    parsed.spec_text = pasted if pasted.strip() else None
    return parsed


def errors_at_fields(err: Exception, form: SubmitForm) -> dict[str, str]:
    """Each message of `err` at the form field it is about."""
    if isinstance(err, FormInvalid):
        return err.errors
    if isinstance(err, ValidationError):
        placed: dict[str, str] = {}
        for problem in err.errors():
            loc = ".".join(str(p) for p in problem["loc"])
            at = _place(loc, form)
            text = f"{loc}: {problem['msg']}" if at in (SPEC, FORM_ERROR) else problem["msg"]
            placed.setdefault(at, text)
        return placed or {FORM_ERROR: message_of(err)}
    name: str | None = None
    if isinstance(err, JobSpecError):
        name = err.column
    elif isinstance(err, ServiceError):
        name = err.field
    return {_place(name, form): str(err) if isinstance(err, JobSpecError) else message_of(err)}


def _place(name: str | None, form: SubmitForm) -> str:
    """The form field to show an error about `name` at."""
    if name == SPEC:
        return SPEC
    field_name = form_field(name)
    if field_name is not None and form.values.get(field_name, "").strip():
        return field_name
    if form.spec_text is not None:
        return SPEC  # it is about a column of the pasted spec
    return field_name or FORM_ERROR


@dataclass(frozen=True)
class JobFilters:
    """The job table's filters, as the query string gives them."""

    product: str | None = None
    stage: Stage | None = None
    priority: Priority | None = None
    engine: str | None = None
    factory: str | None = None
    title: str | None = None
    after: str | None = None  # the continuation token of the page to show
    problems: tuple[str, ...] = ()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> JobFilters:
        """Read the filters; an unknown stage, priority or engine is reported, not applied."""

        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        problems: list[str] = []
        stage = text("stage")
        priority = text("priority")
        engine = text("engine")
        if stage is not None and stage not in Stage.__members__.values():
            problems.append(f"unknown stage {stage!r}")
            stage = None
        if priority is not None and priority not in Priority.__members__.values():
            problems.append(f"unknown priority {priority!r}")
            priority = None
        if engine is not None and engine not in KNOWN_ENGINES:
            problems.append(f"unknown engine {engine!r}")
            engine = None
        return cls(
            product=text("product"),
            stage=Stage(stage) if stage else None,
            priority=Priority(priority) if priority else None,
            engine=engine,
            factory=text("factory"),
            title=text("title"),
            after=text("after"),
            problems=tuple(problems),
        )

    def query(self, *, after: str | None = None) -> dict[str, str]:
        """The filters as query parameters (for links to other pages of the same list)."""
        pairs = {
            "product": self.product,
            "stage": self.stage.value if self.stage else None,
            "priority": self.priority.value if self.priority else None,
            "engine": self.engine,
            "factory": self.factory,
            "title": self.title,
            "after": after,
        }
        return {k: v for k, v in pairs.items() if v}

    @property
    def any(self) -> bool:
        return bool(self.query())
