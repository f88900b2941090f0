"""Job-spec parser properties: rendered specs parse back; only JobSpecError escapes."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gigafactory.durations import format_duration
from gigafactory.jobspec import JobSpecError, parse_job_spec
from gigafactory.models import KNOWN_ENGINES, DependencyKind, JobSpec, Priority

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INHERITED = ("engine", "cwd", "yolo", "productId", "timeoutS")

# Column names a user may write for each field (all must parse to the same field).
HEADERS: dict[str, list[str]] = {
    "engine": ["engine", "Engine", "ENGINE"],
    "cwd": ["cwd", "CWD"],
    "yolo": ["yolo", "Yolo"],
    "lock": ["lock"],
    "timeoutS": ["timeout", "Timeout", "timeoutS", "timeout_s"],
    "priority": ["priority", "Priority"],
    "productId": ["product", "productId", "product-id", "Product ID"],
    "title": ["title", "Title"],
    "capabilities": ["capabilities"],
    "estimatedCostUsd": ["estimatedCostUsd", "cost", "budget", "estimated_cost_usd"],
    "params": ["params"],
}
CHILDREN_HEADING = re.compile(r"^ {0,3}##[ \t]+children", re.IGNORECASE | re.MULTILINE)


# --- the test helper: render a spec as Markdown -----------------------------------------------
def escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def render_cell(name: str, value: Any, draw: st.DrawFn) -> str:
    """A cell for ``value``, written in one of the ways people write it."""
    if name == "engine":
        return str(draw(st.sampled_from([value, value.upper()])))
    if name == "yolo":
        words = ["true", "yes", "1", "True"] if value else ["false", "no", "0", "FALSE"]
        return draw(st.sampled_from(words))
    if name == "timeoutS":
        return draw(st.sampled_from([format_duration(value), str(value), f"{value}s"]))
    if name == "priority":
        return str(draw(st.sampled_from([value, value.upper(), value.title()])))
    if name == "capabilities":
        return escape(draw(st.sampled_from([", ", ",", " , "])).join(value))
    if name == "estimatedCostUsd":
        return draw(st.sampled_from(["", "$"])) + repr(value)
    if name == "params":
        return escape(json.dumps(value))
    if name == "dependsOn":
        return ", ".join(value)
    return escape(value)


def render_table(columns: list[tuple[str, list[str]]]) -> str:
    header = "| " + " | ".join(escape(name) for name, _ in columns) + " |"
    separator = "|" + "---|" * len(columns)
    rows = [
        "| " + " | ".join(column[1][index] for column in columns) + " |"
        for index in range(len(columns[0][1]))
    ]
    return "\n".join([header, separator, *rows])


def render(fields: dict[str, Any], draw: st.DrawFn) -> str:
    """Markdown for camelCase ``fields`` (children as ``{"id", "dependsOn", "spec"}``)."""
    lines: list[str] = []
    settings_fields = {k: v for k, v in fields.items() if k not in ("prompt", "children")}
    title = settings_fields.get("title")
    if title is not None and "#" not in title and draw(st.booleans()):
        lines += [f"# {title}", ""]
        del settings_fields["title"]
    labels = settings_fields.pop("labels", {})
    columns = [
        (draw(st.sampled_from(HEADERS[name])), [render_cell(name, value, draw)])
        for name, value in settings_fields.items()
    ]
    columns += [(name, [escape(value)]) for name, value in labels.items()]
    columns = draw(st.permutations(columns))
    lines.append(render_table(columns))
    if draw(st.booleans()):
        lines.append("")
    lines.append(fields["prompt"])
    children = fields.get("children", [])
    if children:
        lines += ["", "## Children", ""]
        names = sorted({name for child in children for name in child["spec"]} - {"prompt"})
        child_columns = [("id", [child["id"] for child in children])]
        child_columns.append(("dependsOn", [", ".join(c["dependsOn"]) for c in children]))
        child_columns.append(
            ("dependencyKind", [child.get("dependencyKind", "") for child in children])
        )
        for name in names:
            cells = [
                render_cell(name, c["spec"][name], draw) if name in c["spec"] else ""
                for c in children
            ]
            child_columns.append((HEADERS[name][0], cells))
        child_columns.append(("prompt", [escape(c["spec"]["prompt"]) for c in children]))
        lines.append(render_table(draw(st.permutations(child_columns))))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


# --- strategies -------------------------------------------------------------------------------
cell_text = (
    st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
word = st.from_regex(r"[A-Za-z0-9_.:/ -]{0,10}[A-Za-z0-9]", fullmatch=True)
product = st.from_regex(r"[A-Za-z0-9_.]{1,12}", fullmatch=True).filter(lambda p: p != "_fleet")
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), cell_text, st.just("a|b")
)
params = st.dictionaries(cell_text, json_scalar, max_size=3)
capabilities = st.lists(
    cell_text.filter(lambda c: "," not in c).map(str.strip).filter(bool), max_size=4, unique=True
)
prompt_text = (
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r"), min_size=1)
    .map(str.strip)
    .filter(bool)
    .filter(lambda p: not p.startswith("|"))
    .filter(lambda p: not CHILDREN_HEADING.search(p))
)
label_name = st.from_regex(r"x[A-Za-z0-9]{0,8}", fullmatch=True)

OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "cwd": cell_text,
    "yolo": st.booleans(),
    "lock": cell_text,
    "timeoutS": st.integers(1, 10**7),
    "priority": st.sampled_from([p.value for p in Priority]),
    "productId": product,
    "title": cell_text,
    "capabilities": capabilities.filter(bool),
    "estimatedCostUsd": st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    "params": params,
}
CHILD_OPTIONAL = ("engine", "cwd", "yolo", "timeoutS", "priority", "capabilities", "params")


@st.composite
def spec_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The camelCase fields of a random valid spec: only the given ones."""
    fields: dict[str, Any] = {"engine": draw(st.sampled_from(KNOWN_ENGINES))}
    for name, strategy in OPTIONAL.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    names = draw(st.lists(label_name, max_size=3, unique_by=str.lower))
    if names:
        fields["labels"] = {name: draw(cell_text) for name in names}
    fields["prompt"] = draw(prompt_text)
    ids = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True), unique=True))
    children = []
    for index, child_id in enumerate(ids[:4]):
        child_spec: dict[str, Any] = {
            "prompt": draw(cell_text.filter(lambda p: "<br" not in p.lower()))
        }
        for name in CHILD_OPTIONAL:
            if draw(st.integers(0, 3)) == 0:
                strategy = st.sampled_from(KNOWN_ENGINES) if name == "engine" else OPTIONAL[name]
                child_spec[name] = draw(strategy)
        child: dict[str, Any] = {
            "id": child_id,
            "dependsOn": draw(st.lists(st.sampled_from(ids[:index]), unique=True)) if index else [],
            "spec": child_spec,
        }
        if draw(st.booleans()):
            child["dependencyKind"] = draw(st.sampled_from([k.value for k in DependencyKind]))
        children.append(child)
    if children:
        fields["children"] = children
    return fields


def expected_spec(fields: dict[str, Any]) -> JobSpec:
    """The JobSpec ``fields`` describe, children inheriting from the parent."""
    expected = dict(fields)
    expected["children"] = [
        {
            **child,
            "spec": {
                **{name: fields[name] for name in INHERITED if name in fields},
                **child["spec"],
            },
        }
        for child in fields.get("children", [])
    ]
    return JobSpec.model_validate(expected)


@st.composite
def rendered(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    fields = draw(spec_fields())
    return fields, render(fields, draw)


# --- properties -------------------------------------------------------------------------------
@PROPERTY
@given(rendered())
def test_rendered_specs_parse_back(case):
    fields, text = case
    parsed = parse_job_spec(text, source="prop.md")
    assert parsed == expected_spec(fields)
    assert parse_job_spec(text.replace("\n", "\r\n").encode(), source="prop.md") == parsed


FRAGMENTS = [
    "",
    "| engine |",
    "|---|",
    "|---|---|",
    "| :-- | --: | --- |",
    "| sim |",
    "| devinn |",
    "| engine | timeout | params |",
    '| sim | 10x | {"a": 1} |',
    "| sim | 1e400 | [[[ |",
    "| engine | product | cost | yolo |",
    "| sim | a-b | -1 | maybe |",
    "| shell | _fleet | $nan | 1 |",
    "## Children",
    "## children ##",
    "| id | prompt | dependsOn | dependencyKind |",
    "| a | do a | b | later |",
    "| a | <br> | | finished |",
    "|  | x | | |",
    "# Title",
    "```",
    "~~~",
    "| \\| | \\\\| |",
    "| prompt | children | labels |",
    "|",
    "||",
    "Do the thing.",
]
cell_words = st.sampled_from(
    ["engine", "sim", "", "timeout", "1h", "0", "yolo", "maybe", "id", "prompt", "x", "{}"]
    + ["[", "$1", "-1", "children", "dependsOn", "priority", "HIGH", "params", '{"a":']
)
random_row = st.lists(cell_words, max_size=5).map(lambda cells: "| " + " | ".join(cells) + " |")
markdownish = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), random_row, st.text(max_size=20)), max_size=14
).flatmap(lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda nl: nl.join(lines)))


def parses_or_job_spec_error(text: str | bytes, **kwargs: Any) -> None:
    try:
        result = parse_job_spec(text, source="fuzz.md", **kwargs)
    except JobSpecError as err:
        assert str(err).startswith("fuzz.md: ")
    else:
        assert isinstance(result, JobSpec)


@PROPERTY
@given(st.text())
def test_arbitrary_text_parses_or_raises_job_spec_error(text):
    parses_or_job_spec_error(text)


@PROPERTY
@given(st.binary())
def test_arbitrary_bytes_parse_or_raise_job_spec_error(data):
    parses_or_job_spec_error(data)


@PROPERTY
@given(markdownish)
def test_markdownish_text_parses_or_raises_job_spec_error(text):
    parses_or_job_spec_error(text)


override_value = st.one_of(
    st.none(),
    st.text(max_size=10),
    st.sampled_from(["sim", "high", "p1", "10h", "a-b", "9" * 400]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.lists(
        st.fixed_dictionaries(
            {
                "id": st.text(max_size=3),
                "spec": st.dictionaries(
                    st.sampled_from(["engine", "prompt", "timeout", "product_id", "x"]),
                    st.text(max_size=4),
                ),
            }
        ),
        max_size=2,
    ),
)
override_key = st.sampled_from(
    ["engine", "prompt", "cwd", "yolo", "lock", "timeout", "timeoutS", "timeout_s", "priority"]
    + ["productId", "product_id", "title", "capabilities", "labels", "estimatedCostUsd"]
    + ["params", "children", "bogus"]
)


@PROPERTY
@given(markdownish, st.dictionaries(override_key, override_value, max_size=4))
def test_overrides_never_leak_other_errors(text, overrides):
    parses_or_job_spec_error(text, overrides=overrides)


@PROPERTY
@given(rendered(), st.sampled_from([p.value for p in Priority]), product)
def test_overrides_win_over_rendered_specs(case, priority, product_id):
    fields, text = case
    parsed = parse_job_spec(text, overrides={"priority": priority, "product_id": product_id})
    assert parsed == expected_spec({**fields, "priority": priority, "productId": product_id})
