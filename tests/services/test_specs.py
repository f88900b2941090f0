"""From a submission to a validated spec: every refusal names what is wrong."""

from __future__ import annotations

import pytest

from gigafactory.jobspec import JobSpecError
from gigafactory.models import Role
from gigafactory.services.errors import InvalidInput, NotFoundError, TooLarge
from gigafactory.services.specs import Submission, build_spec
from gigafactory.settings import Settings
from tests.services.conftest import key

SETTINGS = Settings(max_spec_bytes=2048, dag_max_children=3)


def test_fields_with_the_keys_only_product() -> None:
    spec = build_spec(
        Submission(fields={"engine": "sim", "prompt": "go"}),
        key(Role.SUBMITTER, ["acme"]),
        SETTINGS,
    )
    assert spec.product_id == "acme"


def test_a_product_is_required_when_the_key_has_several() -> None:
    with pytest.raises(InvalidInput) as refused:
        build_spec(
            Submission(fields={"engine": "sim", "prompt": "go"}),
            key(Role.SUBMITTER, ["acme", "beta"]),
            SETTINGS,
        )
    assert refused.value.field == "productId"
    assert "products acme, beta" in refused.value.message


def test_another_products_job_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="product beta not found"):
        build_spec(
            Submission(fields={"engine": "sim", "prompt": "go", "productId": "beta"}),
            key(Role.ADMIN, ["acme"]),
            SETTINGS,
        )


def test_a_spec_file_with_overriding_fields() -> None:
    text = "| engine | priority |\n|---|---|\n| shell | low |\n\necho hi\n"
    spec = build_spec(
        Submission(fields={"priority": "high", "productId": "acme"}, spec_text=text),
        key(),
        SETTINGS,
    )
    assert (spec.engine, spec.priority.value, spec.prompt.strip()) == ("shell", "high", "echo hi")


def test_the_parsers_error_names_the_column() -> None:
    with pytest.raises(JobSpecError) as refused:
        build_spec(
            Submission(
                fields={"productId": "acme"},
                spec_text="| engine | timeout |\n|---|---|\n| shell | soon |\n\necho\n",
            ),  # fmt: skip
            key(),
            SETTINGS,
        )
    assert "timeout" in str(refused.value) and "soon" in str(refused.value)


@pytest.mark.parametrize("field", ["spec", "prompt"])
def test_too_large_names_the_size_and_limit(field: str) -> None:
    big = "x" * 3000
    submission = (
        Submission(fields={"productId": "acme"}, spec_text="| engine |\n|---|\n| sim |\n\n" + big)
        if field == "spec"
        else Submission(fields={"engine": "sim", "prompt": big, "productId": "acme"})
    )
    with pytest.raises(TooLarge) as refused:
        build_spec(submission, key(), SETTINGS)
    assert refused.value.field == field and "2048" in refused.value.message


def test_request_weights_are_checked() -> None:
    with pytest.raises(InvalidInput) as refused:
        build_spec(
            Submission(
                fields={
                    "engine": "sim",
                    "prompt": "go",
                    "productId": "acme",
                    "routingWeights": {"speed": 1},
                }  # fmt: skip
            ),
            key(),
            SETTINGS,
        )
    assert refused.value.field == "routingWeights" and "speed" in refused.value.message


def test_a_cycle_and_a_child_in_another_product_are_refused() -> None:
    cyclic = [
        {"id": "a", "dependsOn": ["b"], "spec": {"prompt": "a"}},
        {"id": "b", "dependsOn": ["a"], "spec": {"prompt": "b"}},
    ]
    with pytest.raises(InvalidInput) as refused:
        build_spec(
            Submission(
                fields={"engine": "sim", "prompt": "", "productId": "acme", "children": cyclic}
            ),  # fmt: skip
            key(),
            SETTINGS,
        )
    assert refused.value.code == "invalid_dag" and "cycle" in refused.value.message
    foreign = [{"id": "a", "spec": {"prompt": "a", "productId": "beta"}}]
    with pytest.raises(InvalidInput, match="children belong to their parent's product"):
        build_spec(
            Submission(
                fields={"engine": "sim", "prompt": "", "productId": "acme", "children": foreign}
            ),  # fmt: skip
            key(),
            SETTINGS,
        )
