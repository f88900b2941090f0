"""From what a submitter sends to a validated job spec: one place for every rule.

A submission is job fields, a job-spec Markdown file (`spec`) with fields overriding it, or
both. The rules: size limits, the parser's own errors (which name the column), the product
(given, or the key's only one), the key's product scope, request weight overrides, and the
DAG (cycles, self-edges, unknown ids, width, depth, children in their parent's product).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gigafactory.dag import DagError, DagLimits, validate_dag
from gigafactory.jobspec import inherit_child_fields, parse_job_spec
from gigafactory.models import ApiKey, ChildSpec, JobSpec
from gigafactory.services.access import product_not_found
from gigafactory.services.errors import InvalidInput, TooLarge
from gigafactory.services.limits import check_spec_sizes
from gigafactory.settings import Settings
from routing import FleetWeights, WeightsError

__all__ = ["Submission", "build_spec", "check_dag", "check_weights", "inherited_children"]


@dataclass(frozen=True)
class Submission:
    """What a submitter sent: job fields (camelCase, `None`s left out) and/or a spec file."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    spec_text: str | None = None


def _too_large(what: str, size: int, limit: int, setting: str) -> TooLarge:
    return TooLarge(f"{what} is {size} bytes; the limit is {limit} bytes ({setting})", field=what)


def build_spec(submission: Submission, key: ApiKey, settings: Settings) -> JobSpec:
    """The validated spec of a submission, in a product the key may see.

    Raises:
        TooLarge: the spec file, a prompt or a label is over its limit (FLEET_MAX_*).
        JobSpecError: the spec file does not parse (the message names the column).
        InvalidInput: no product can be inferred, bad weights, or an invalid DAG.
        NotFoundError: the key may not see the product.
    """
    fields = dict(submission.fields)
    limit = settings.max_spec_bytes
    if submission.spec_text is not None:
        size = len(submission.spec_text.encode())
        if size > limit:
            raise _too_large("spec", size, limit, "FLEET_MAX_SPEC_BYTES")
        spec = parse_job_spec(submission.spec_text, source="api", max_bytes=limit, overrides=fields)
    else:
        # Checked before validation too, so a huge prompt costs no parsing.
        prompt_size = len(str(fields.get("prompt") or "").encode(errors="surrogatepass"))
        if prompt_size > settings.prompt_limit:
            raise _too_large("prompt", prompt_size, settings.prompt_limit, "FLEET_MAX_PROMPT_BYTES")
        spec = JobSpec.model_validate(inherit_child_fields(fields))
    if "product_id" not in spec.model_fields_set:
        # Neither the request nor the spec file named a product: the key's only one, if so.
        if len(key.products) != 1 or key.products[0] == "*":
            which = (
                "every product" if "*" in key.products else f"products {', '.join(key.products)}"
            )
            raise InvalidInput(
                f"productId is required: this key may submit to {which}", field="productId"
            )
        spec = JobSpec.model_validate(
            inherit_child_fields({**spec.model_dump(by_alias=True), "productId": key.products[0]})
        )
    if not key.may_see(spec.product_id):
        raise product_not_found(spec.product_id)
    check_spec_sizes(settings, spec)
    if spec.routing_weights:
        check_weights(spec.routing_weights, layer="request override", field="routingWeights")
    check_dag(spec, settings)
    return spec


def check_weights(weights: Mapping[str, float], *, layer: str, field: str) -> FleetWeights:
    """The defaults with `weights` applied.

    Raises:
        InvalidInput: naming the bad term.
    """
    try:
        return FleetWeights().override(weights, layer=layer)
    except WeightsError as err:
        raise InvalidInput(str(err), field=field) from None


def check_dag(
    spec: JobSpec,
    settings: Settings,
    children: Sequence[ChildSpec] | None = None,
    existing: Sequence[ChildSpec] = (),
) -> None:
    """Check that `children` (default: the spec's), with the parent's `existing` ones, are a
    valid DAG; their own children are checked the same way.

    Raises:
        InvalidInput: code `invalid_dag`, naming the id or edge.
    """
    limits = DagLimits(settings.dag_max_children, settings.dag_max_depth)
    top = list(spec.children if children is None else children)
    pending: list[tuple[str, Sequence[ChildSpec], Sequence[ChildSpec]]] = [("", top, existing)]
    while pending:
        where, new, known = pending.pop()
        try:
            validate_dag(new, limits, existing=known)
        except DagError as err:
            raise InvalidInput(f"{where}{err}", field="children", code="invalid_dag") from None
        for child in new:
            if child.spec.product_id != spec.product_id:
                raise InvalidInput(
                    f"{where}child {child.id!r} is in product {child.spec.product_id}; "
                    f"children belong to their parent's product {spec.product_id}",
                    field="children",
                    code="invalid_dag",
                )
            if child.spec.children:
                pending.append((f"{where}child {child.id!r}: ", child.spec.children, ()))


def inherited_children(parent: JobSpec, children: Sequence[Mapping[str, Any]]) -> list[ChildSpec]:
    """Children added to an existing parent, with what they leave out taken from it (engine,
    cwd, yolo, timeout, product), validated as specs."""
    inheritable = parent.model_dump(
        by_alias=True, include={"engine", "cwd", "yolo", "timeout_s", "product_id"}
    )
    fields: dict[str, Any] = {**inheritable, "prompt": "-", "children": list(children)}
    return JobSpec.model_validate(inherit_child_fields(fields)).children
