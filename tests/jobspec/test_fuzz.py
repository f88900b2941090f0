"""Hostile job specs: whatever the text, the parser ends quickly with a JobSpec or its own
JobSpecError, and a JobSpec it accepts can be stored and sent to Temporal.

`test_properties.py` fuzzes arbitrary text, bytes, Markdown-like text and overrides; here:
inputs as large as the limit built from repeated fragments (the shapes that make regular
expressions and splitters backtrack or recurse), deeply nested JSON, and the round trip of
every accepted spec. Each test carries a timeout, so a hang fails it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter

from gigafactory.jobspec import MAX_SPEC_BYTES, JobSpecError, parse_job_spec
from gigafactory.models import MAX_PARAMS_DEPTH, JobSpec
from tests.jobspec.test_properties import markdownish

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HEAD = "| engine | params | timeout | cost |\n|---|---|---|---|\n"
PROMPT_TAIL = "\n\nprompt\n"

# Pieces that stress each part of the parser when repeated: headings with runs of spaces,
# tabs and hashes, table rows with many cells and escapes, separators, fences, <br> tags,
# the Children heading, and JSON brackets.
FRAGMENTS = [
    "#", " ", "\t", "# ", " #", "|", "\\|", "\\", "-", ":", "---|", ":-:|", "```", "~~~",
    "<br", "<br/>", "<br >", "## Children", "\n", "\r\n", "\r", "[", "]", "{", "}", '"',
    '{"a":', "[[", "x", "é", "\u2028", "\x00", "\ufeff", " _-", ",", "$", "1e", "9",
]  # fmt: skip


def accepted(text: str | bytes, **kwargs: Any) -> JobSpec | None:
    """The spec, or None for a JobSpecError; any other exception fails the test."""
    try:
        return parse_job_spec(text, source="fuzz.md", **kwargs)
    except JobSpecError as err:
        assert str(err).startswith("fuzz.md: ")
        return None


def storable(spec: JobSpec) -> None:
    """What the API does with an accepted spec: store it as JSON, send it to Temporal."""
    document = spec.model_dump(mode="json", by_alias=True)
    assert JobSpec.model_validate(json.loads(json.dumps(document))) == spec
    pydantic_data_converter.payload_converter.to_payloads([spec])


@st.composite
def repeated(draw: st.DrawFn) -> str:
    """A spec as large as the limit allows, mostly one or two repeated fragments, placed in
    the title, a cell, or the prompt."""
    pattern = "".join(draw(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3)))
    room = MAX_SPEC_BYTES - len(HEAD) - len(PROMPT_TAIL) - 64
    times = draw(st.integers(1, max(1, room // max(1, len(pattern.encode())))))
    body = pattern * times
    where = draw(st.sampled_from(["title", "cell", "prompt", "header", "children"]))
    if where == "title":
        return f"# {body}\n{HEAD}| shell | | | |{PROMPT_TAIL}"
    if where == "cell":
        return f"{HEAD}| shell | {body} | {body[:64]} | {body[:64]} |{PROMPT_TAIL}"
    if where == "header":
        return f"| engine {body} |\n|---|\n| shell |{PROMPT_TAIL}"
    if where == "children":
        return (
            f"{HEAD}| shell | | | |\n\np\n## Children\n| id | prompt |\n|---|---|\n| a | {body} |\n"
        )
    return f"{HEAD}| shell | | | |\n\n{body}\n"


@pytest.mark.timeout(240)
@FUZZ
@given(repeated())
def test_inputs_as_large_as_the_limit_end_quickly_with_a_spec_or_its_error(text: str) -> None:
    spec = accepted(text)
    if spec is not None:
        storable(spec)
    # The same bytes as bytes, and one byte over the limit.
    accepted(text.encode("utf-8", errors="surrogatepass"))
    assert accepted(text + "x" * (MAX_SPEC_BYTES + 1 - len(text.encode(errors="replace")))) is None


def nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)


@pytest.mark.timeout(120)
@FUZZ
@given(st.integers(0, 40_000), st.sampled_from(["list", "object", "mixed"]))
def test_deeply_nested_params_are_refused_as_job_spec_errors(depth: int, kind: str) -> None:
    document = nested(depth, kind)
    text = f"| engine | params |\n|---|---|\n| shell | {document} |\n\nprompt\n"
    spec = accepted(text)
    if spec is not None:
        storable(spec)
    # The same document as an override (what the API passes with a spec file).
    try:
        value = json.loads(document)
    except ValueError:
        return  # empty: no document to pass
    except RecursionError:
        return  # deeper than JSON itself decodes: the API answers 422 before the parser
    override = accepted("| engine |\n|---|\n| shell |\n\nprompt\n", overrides={"params": value})
    if override is not None:
        storable(override)


def test_params_at_the_depth_limit_are_accepted_and_one_more_is_refused() -> None:
    # MAX_PARAMS_DEPTH objects nested, the outermost being params itself.
    ok = nested(MAX_PARAMS_DEPTH, "object")
    spec = accepted(f"| engine | params |\n|---|---|\n| shell | {ok} |\n\nprompt\n")
    assert spec is not None
    storable(spec)
    deep = nested(MAX_PARAMS_DEPTH + 1, "object")
    with pytest.raises(JobSpecError, match="params.*nested more than"):
        parse_job_spec(f"| engine | params |\n|---|---|\n| shell | {deep} |\n\nprompt\n")


@pytest.mark.timeout(240)
@FUZZ
@given(markdownish)
def test_every_accepted_spec_can_be_stored_and_sent(text: str) -> None:
    spec = accepted(text)
    if spec is not None:
        storable(spec)
