"""The job-spec parser: the real example files, every column, children, overrides, errors."""

from __future__ import annotations

import pickle

import pytest

from gigafactory.jobspec import (
    INHERITED_FIELDS,
    MAX_SPEC_BYTES,
    JobSpecError,
    inherit_child_fields,
    load_job_spec,
    parse_job_spec,
    parse_job_spec_fields,
)
from gigafactory.models import KNOWN_ENGINES, DependencyKind, JobSpec, Priority
from tests.conftest import EXAMPLES_DIR

EXAMPLES = EXAMPLES_DIR


def spec(table: str, prompt: str = "Do the thing.", **kwargs) -> JobSpec:
    """Parse a settings table (and a prompt below it)."""
    return parse_job_spec(f"{table.strip()}\n{prompt}", source="t.md", **kwargs)


def error(text: str | bytes, **kwargs) -> JobSpecError:
    """The JobSpecError parsing ``text`` raises."""
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(text, source="t.md", **kwargs)
    return caught.value


ONE = "| engine |\n|---|\n| sim |\n"


# --- the example files ------------------------------------------------------------------------
def test_phase3_example():
    path = EXAMPLES / "phase3-job.md"
    parsed = load_job_spec(path)
    assert parsed.engine == "devin"
    assert parsed.cwd == "/Users/sd9235/code/mygh/learning_ai_common_plat"
    assert parsed.yolo is True
    assert parsed.lock == "common-plat-phase3"
    assert parsed.timeout_s == 36000
    body = "\n".join(path.read_text(encoding="utf-8").split("\n")[3:]).strip()
    assert parsed.prompt == body
    assert parsed.prompt.startswith("ROLE: Senior full-stack engineer")
    # The prompt's own table (its last line) stays in the prompt.
    assert parsed.prompt.endswith(
        "| slice | status (DONE/WIP/FAILED) | commit | verify gate | notes |"
    )
    assert parsed.labels == {}
    assert parsed.children == []


def test_phase3_example_from_text_and_bytes_agree():
    path = EXAMPLES / "phase3-job.md"
    from_text = parse_job_spec(path.read_text(encoding="utf-8"), source="phase3-job.md")
    from_bytes = parse_job_spec(path.read_bytes(), source="phase3-job.md")
    assert from_text == from_bytes == load_job_spec(str(path))


def test_only_given_fields_are_set():
    # The API tells "the file named no product" from "the file named the default one".
    parsed = load_job_spec(EXAMPLES / "phase3-job.md")
    assert parsed.model_fields_set == {"engine", "cwd", "yolo", "lock", "timeout_s", "prompt"}
    assert parsed.product_id == "default"


def test_shell_hello_example():
    parsed = load_job_spec(EXAMPLES / "shell-hello.md")
    assert parsed == JobSpec(
        engine="shell",
        cwd=".",
        yolo=False,
        lock="hello-lock",
        timeout_s=120,
        prompt='echo "hello from a factory"\nuname -a',
    )


# --- columns ----------------------------------------------------------------------------------
def test_every_column():
    parsed = spec(
        "| engine | cwd | yolo | lock | timeout | priority | product | title | capabilities "
        "| estimatedCostUsd | params |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| codex | /repo | yes | l1 | 90s | high | demo | Retries | gpu, macos | 2.5 "
        '| {"durationS": 2, "tags": ["a"]} |'
    )
    assert parsed == JobSpec(
        engine="codex",
        prompt="Do the thing.",
        cwd="/repo",
        yolo=True,
        lock="l1",
        timeout_s=90,
        priority=Priority.HIGH,
        product_id="demo",
        title="Retries",
        capabilities=["gpu", "macos"],
        estimated_cost_usd=2.5,
        params={"durationS": 2, "tags": ["a"]},
    )


@pytest.mark.parametrize(
    "header",
    ["productId", "product", "Product ID", "product-id", "product_id", "PRODUCTID"],
)
def test_column_names_ignore_case_spaces_dashes_underscores(header):
    assert spec(f"| Engine | {header} |\n|---|---|\n| sim | p1 |").product_id == "p1"


@pytest.mark.parametrize("header", ["estimatedCostUsd", "cost", "budget", "estimated-cost-usd"])
@pytest.mark.parametrize(("cell", "expected"), [("2.5", 2.5), ("$2.50", 2.5), ("0", 0.0)])
def test_cost_columns(header, cell, expected):
    parsed = spec(f"| engine | {header} |\n|---|---|\n| sim | {cell} |")
    assert parsed.estimated_cost_usd == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("true", True), ("True", True), ("yes", True), ("1", True), ("false", False)]
    + [("FALSE", False), ("no", False), ("0", False)],
)
def test_yolo_values(cell, expected):
    assert spec(f"| engine | yolo |\n|---|---|\n| sim | {cell} |").yolo is expected


@pytest.mark.parametrize(
    ("cell", "seconds"),
    [("10h", 36000), ("90s", 90), ("15m", 900), ("1d", 86400), ("120", 120), ("500ms", 0.5)],
)
def test_timeouts(cell, seconds):
    assert spec(f"| engine | timeout |\n|---|---|\n| sim | {cell} |").timeout_s == seconds


def test_timeout_s_column_name():
    assert spec("| engine | timeoutS |\n|---|---|\n| sim | 2m |").timeout_s == 120


@pytest.mark.parametrize("cell", ["low", "Normal", "HIGH", "critical"])
def test_priorities_ignore_case(cell):
    assert spec(f"| engine | priority |\n|---|---|\n| sim | {cell} |").priority == cell.lower()


def test_engine_ignores_case():
    assert spec("| engine |\n|---|\n| Claude-Code |").engine == "claude-code"


def test_capabilities_are_trimmed_without_empties_or_repeats():
    parsed = spec("| engine | capabilities |\n|---|---|\n| sim | gpu ,, macos, gpu , |")
    assert parsed.capabilities == ["gpu", "macos"]


def test_unknown_columns_become_labels():
    parsed = spec("| engine | Team | ticket-id |\n|---|---|---|\n| sim | Platform | ABC-12 |")
    assert parsed.labels == {"Team": "Platform", "ticket-id": "ABC-12"}


def test_empty_cells_mean_not_given():
    parsed = spec(
        "| engine | cwd | yolo | timeout | priority | team |\n|---|---|---|---|---|---|\n"
        "| sim | | | | |  |"
    )
    assert parsed == JobSpec(engine="sim", prompt="Do the thing.")
    assert parsed.model_fields_set == {"engine", "prompt"}


def test_title_from_the_heading_above_the_table():
    parsed = parse_job_spec(f"# Add retries #\n\n## notes\n\n{ONE}Go.")
    assert parsed.title == "Add retries"


def test_title_column_wins_over_the_heading():
    text = "# From heading\n| engine | title |\n|---|---|\n| sim | From column |\nGo."
    assert parse_job_spec(text).title == "From column"


def test_empty_title_cell_falls_back_to_the_heading():
    text = "# From heading\n| engine | title |\n|---|---|\n| sim | |\nGo."
    assert parse_job_spec(text).title == "From heading"


# --- table syntax -----------------------------------------------------------------------------
def test_escaped_pipes_in_cells():
    parsed = spec(
        "| engine | cwd | params | note |\n|---|---|---|---|\n"
        '| sim | /a\\|b | {"cmd": "ls \\| wc"} | x \\| y |'
    )
    assert parsed.cwd == "/a|b"
    assert parsed.params == {"cmd": "ls | wc"}
    assert parsed.labels == {"note": "x | y"}


def test_other_backslashes_are_kept():
    parsed = spec("| engine | cwd |\n|---|---|\n| sim | C:\\code\\repo |")
    assert parsed.cwd == "C:\\code\\repo"


def test_trailing_pipe_is_optional_and_alignment_colons_are_allowed():
    parsed = parse_job_spec("| engine | lock\n|:---|---:\n| sim | l1\nGo.")
    assert (parsed.engine, parsed.lock) == ("sim", "l1")


def test_indented_rows():
    parsed = parse_job_spec("  | engine |\n  | --- |\n  | sim |\nGo.")
    assert parsed.engine == "sim"


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_line_endings(newline):
    text = f"| engine | lock |{newline}|---|---|{newline}| sim | l1 |{newline}line 1{newline}line 2"
    parsed = parse_job_spec(text)
    assert parsed.lock == "l1"
    assert parsed.prompt == "line 1\nline 2"
    assert parse_job_spec(text.encode()) == parsed


def test_byte_order_mark_is_ignored():
    parsed = parse_job_spec(b"\xef\xbb\xbf" + ONE.encode() + b"Go.")
    assert parsed.engine == "sim"


# --- the prompt -------------------------------------------------------------------------------
def test_prompt_is_trimmed_and_otherwise_verbatim():
    body = "\n\n  Step 1:\n    indented | pipe\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n  end  \n\n"
    parsed = parse_job_spec(ONE + body)
    assert parsed.prompt == body.strip()


def test_prompt_after_a_blank_line():
    assert parse_job_spec(ONE + "\nGo.\n").prompt == "Go."


# --- overrides --------------------------------------------------------------------------------
def test_overrides_win():
    parsed = spec(
        "| engine | product | priority | params | lock |\n|---|---|---|---|---|\n"
        '| devin | p0 | low | {"a": 1} | l1 |',
        overrides={
            "productId": "p1",
            "priority": "high",
            "engine": "sim",
            "params": {"b": 2},
            "lock": None,  # None means "not given": the file's value stays
        },
    )
    assert parsed.product_id == "p1"
    assert parsed.priority == Priority.HIGH
    assert parsed.engine == "sim"
    assert parsed.params == {"b": 2}  # replaced, not merged
    assert parsed.lock == "l1"


def test_overrides_accept_snake_case_and_timeout():
    parsed = spec(
        "| engine |\n|---|\n| sim |",
        overrides={"product_id": "p2", "timeout": "15m", "estimated_cost_usd": 1.5},
    )
    assert (parsed.product_id, parsed.timeout_s, parsed.estimated_cost_usd) == ("p2", 900, 1.5)
    assert "product_id" in parsed.model_fields_set


def test_an_override_fixes_a_bad_engine_in_the_file():
    assert spec("| engine |\n|---|\n| devinn |", overrides={"engine": "sim"}).engine == "sim"


def test_an_override_can_give_the_engine_and_the_prompt():
    parsed = parse_job_spec(
        "| lock |\n|---|\n| l1 |\n", overrides={"engine": "shell", "prompt": "echo hi"}
    )
    assert (parsed.engine, parsed.prompt, parsed.lock) == ("shell", "echo hi", "l1")


def test_unknown_override_field():
    err = error(ONE + "Go.", overrides={"enginee": "sim"})
    assert err.column == "enginee"
    assert "unknown override field 'enginee'" in str(err)


def test_bad_override_value_names_the_field():
    err = error(ONE + "Go.", overrides={"priority": "urgent"})
    assert err.column == "priority"
    assert err.value == "urgent"
    assert str(err).startswith("t.md: field 'priority': Input should be")
    err = error(ONE + "Go.", overrides={"productId": "a-b"})
    assert str(err).startswith("t.md: field 'productId': invalid productId 'a-b'")


# --- children ---------------------------------------------------------------------------------
DIAMOND = """\
# Add retry support to the HTTP client

| engine | product | cwd | yolo | timeout | lock |
|---|---|---|---|---|---|
| sim | demo | /repo | true | 2h | parent-lock |

Integrate the children's work and open one pull request.

## Children

| id | engine | dependsOn | dependencyKind | priority | timeout | capabilities | estimatedCostUsd | params | prompt |
|---|---|---|---|---|---|---|---|---|---|
| design | | | | high | 10m | | 0.2 | {"durationS": 2} | Write the design note. |
| impl | codex | design | | | | gpu | | | Implement retries.<br>Keep it small. |
| tests | | design | | | | | | | Write the tests. |
| review | | impl, tests | finished | | | | | | Review both. |
"""  # noqa: E501


def test_children_table():
    parsed = parse_job_spec(DIAMOND, source="dag.md")
    assert parsed.prompt == "Integrate the children's work and open one pull request."
    assert parsed.title == "Add retry support to the HTTP client"
    assert [c.id for c in parsed.children] == ["design", "impl", "tests", "review"]
    design, impl, tests, review = parsed.children
    assert design.depends_on == []
    assert design.dependency_kind == DependencyKind.SUCCEEDED
    assert design.spec == JobSpec(
        engine="sim",
        prompt="Write the design note.",
        cwd="/repo",
        yolo=True,
        timeout_s=600,
        priority=Priority.HIGH,
        product_id="demo",
        estimated_cost_usd=0.2,
        params={"durationS": 2},
    )
    assert impl.depends_on == ["design"]
    assert impl.spec.engine == "codex"
    assert impl.spec.capabilities == ["gpu"]
    assert impl.spec.prompt == "Implement retries.\nKeep it small."
    assert impl.spec.timeout_s == 7200  # inherited
    assert impl.spec.lock is None  # a lock is not inherited
    assert tests.spec.engine == "sim"
    assert review.depends_on == ["impl", "tests"]
    assert review.dependency_kind == DependencyKind.FINISHED


def test_children_inherit_overrides():
    parsed = parse_job_spec(DIAMOND, overrides={"productId": "other", "cwd": "/elsewhere"})
    assert {c.spec.product_id for c in parsed.children} == {"other"}
    assert {c.spec.cwd for c in parsed.children} == {"/elsewhere"}


def test_children_do_not_invent_a_product():
    text = ONE + "Parent.\n\n## Children\n\n| id | prompt |\n|---|---|\n| a | Do a. |\n"
    parsed = parse_job_spec(text)
    assert "product_id" not in parsed.children[0].spec.model_fields_set
    assert parsed.children[0].spec.engine == "sim"


def test_text_after_the_children_table_is_prompt():
    text = ONE + "Before.\n## children ##\n| id | prompt |\n|---|---|\n| a | Do a. |\nAfter."
    parsed = parse_job_spec(text)
    assert parsed.prompt == "Before.\nAfter."
    assert len(parsed.children) == 1


def test_children_heading_in_a_code_block_is_prompt():
    body = "Show this:\n```markdown\n## Children\n\nno table here\n```\nDone."
    parsed = parse_job_spec(ONE + body)
    assert parsed.prompt == body
    assert parsed.children == []


def test_children_may_carry_labels_and_other_settings():
    text = (
        ONE
        + "P.\n## Children\n| id | prompt | Team | lock | yolo |\n|---|---|---|---|---|\n"
        + "| a | A. | infra | la | no |\n"
    )
    child = parse_job_spec(text).children[0]
    assert (child.spec.labels, child.spec.lock, child.spec.yolo) == ({"Team": "infra"}, "la", False)


@pytest.mark.parametrize(
    ("table", "message", "column"),
    [
        (
            "| prompt |\n|---|\n| A. |",
            "the '## Children' table has no 'id' column (line 6)",
            "id",
        ),
        (
            "| id |\n|---|\n| a |",
            "the '## Children' table has no 'prompt' column (line 6)",
            "prompt",
        ),
        (
            "| id | prompt |\n|---|---|\n| a | A. |\n|  | B. |",
            "'## Children' row 2 (line 9): column 'id': every child needs an id",
            "id",
        ),
        (
            "| id | prompt |\n|---|---|\n| a | A. |\n| a | B. |",
            "'## Children' row 2 (line 9, id 'a'): column 'id': duplicate child id 'a' "
            "(also row 1)",
            "id",
        ),
        (
            "| id | prompt |\n|---|---|\n| a b | A. |",
            "'## Children' row 1 (line 8, id 'a b'): column 'id': bad child id 'a b'",
            "id",
        ),
        (
            "| id | prompt |\n|---|---|\n| a | <br> |",
            "'## Children' row 1 (line 8, id 'a'): column 'prompt': empty prompt",
            "prompt",
        ),
        (
            "| id | engine | prompt |\n|---|---|---|\n| a | | A. |\n| b | devinn | B. |",
            "'## Children' row 2 (line 9, id 'b'): column 'engine': unknown engine 'devinn'",
            "engine",
        ),
        (
            "| id | dependsOn | dependencyKind | prompt |\n|---|---|---|---|\n| a | b | ok | A. |",
            "'## Children' row 1 (line 8, id 'a'): column 'dependencyKind': unknown dependency "
            "kind 'ok'",
            "dependencyKind",
        ),
        (
            "| id | timeout | prompt |\n|---|---|---|\n| a | soon | A. |",
            "'## Children' row 1 (line 8, id 'a'): column 'timeout': bad duration 'soon'",
            "timeout",
        ),
        (
            "| id | prompt | children |\n|---|---|---|\n| a | A. | b |",
            "'## Children' table: column 'children': children cannot have children",
            "children",
        ),
        ("| id | prompt |\n|---|---|", "the '## Children' table has no rows", None),
        (
            "| id | prompt |\n|---|---|\n| a | A. | x |",
            "the '## Children' table: line 8 has 3 cells but the header has 2",
            None,
        ),
    ],
)
def test_children_errors(table, message, column):
    err = error(f"{ONE}P.\n## Children\n{table}\n")
    assert str(err).startswith(f"t.md: {message}"), str(err)
    assert err.column == column


def test_children_heading_without_a_table():
    err = error(ONE + "P.\n## Children\n\nthe children are listed below\n")
    assert str(err) == (
        "t.md: the '## Children' heading (line 5) must be followed by a table with one row "
        "per child"
    )
    assert err.line == 5


def test_two_children_sections():
    section = "## Children\n| id | prompt |\n|---|---|\n| a | A. |\n"
    err = error(ONE + "P.\n" + section + section.replace("| a |", "| b |"))
    assert "more than one '## Children' section (lines 5 and 9)" in str(err)


def test_fields_give_children_without_inheritance():
    fields = parse_job_spec_fields(DIAMOND)
    assert fields["children"][2] == {
        "id": "tests",
        "dependsOn": ["design"],
        "spec": {"prompt": "Write the tests."},
    }
    inherited = inherit_child_fields(fields)["children"][2]["spec"]
    assert inherited == {
        "prompt": "Write the tests.",
        "engine": "sim",
        "cwd": "/repo",
        "yolo": True,
        "productId": "demo",
        "timeoutS": 7200,
    }
    assert set(INHERITED_FIELDS) < set(inherited)


# --- parse_job_spec_fields --------------------------------------------------------------------
def test_fields_are_camel_case_and_converted():
    text = (
        "# T\n| engine | yolo | timeout | product | cost | priority | capabilities | x |\n"
        "|---|---|---|---|---|---|---|---|\n| Devinn | yes | 1h | p | $3 | High | a,b | y |\nGo."
    )
    assert parse_job_spec_fields(text) == {
        "engine": "devinn",  # whether the engine is known is checked after overrides
        "yolo": True,
        "timeoutS": 3600.0,
        "productId": "p",
        "estimatedCostUsd": 3.0,
        "priority": "high",
        "capabilities": ["a", "b"],
        "labels": {"x": "y"},
        "prompt": "Go.",
        "title": "T",
    }


def test_fields_leave_out_what_is_missing():
    assert parse_job_spec_fields("| lock |\n|---|\n| l |\n") == {"lock": "l"}


def test_fields_still_check_cells():
    with pytest.raises(JobSpecError, match="column 'yolo'"):
        parse_job_spec_fields("| yolo |\n|---|\n| maybe |\n")


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "t.md: empty file: a job spec is a settings table followed by the prompt"),
        (" \n\n\t\n", "t.md: empty file: a job spec is a settings table followed by the prompt"),
        (
            "just a prompt\nwith no table",
            "t.md: no settings table: the file must start with a Markdown table (a header row, a "
            "|---| separator row and one row of values), optionally after a '# Title' heading; "
            "line 1 is 'just a prompt'",
        ),
        (
            "# Title\nSome text.\n" + ONE + "Go.",
            "t.md: no settings table: the file must start with a Markdown table (a header row, a "
            "|---| separator row and one row of values), optionally after a '# Title' heading; "
            "line 2 is 'Some text.'",
        ),
        (
            "# Only a title\n",
            "t.md: no settings table: the file must start with a Markdown table (a header row, a "
            "|---| separator row and one row of values), e.g. '| engine |' / '|---|' / '| sim |'",
        ),
        (
            "| engine |\n| sim |\nGo.",
            "t.md: the settings table: the header row (line 1) must be followed by a separator "
            "row such as |---|---|; line 2 is '| sim |'",
        ),
        (
            "| engine | lock |\nGo.",
            "t.md: the settings table: the header row (line 1) must be followed by a separator "
            "row such as |---|---|; line 2 is 'Go.'",
        ),
        (
            "| engine |",
            "t.md: the settings table: the header row (line 1) must be followed by a separator "
            "row such as |---|---|; the file ends there",
        ),
        (
            "| engine | lock |\n|---|\n| sim | l |\nGo.",
            "t.md: the settings table: the separator row (line 2) has 1 cells but the header has 2",
        ),
        (
            "| engine |\n|---|\nGo.",
            "t.md: the settings table has no value row: add one row of values below the "
            "separator (line 2)",
        ),
        (
            "| engine |\n|---|\n| sim |\n| shell |\n| devin |\nGo.",
            "t.md: the settings table has 3 value rows (lines 3-5); it must have exactly one "
            "(one job per file). If the prompt starts with a table, leave a blank line after "
            "the settings table",
        ),
        (
            "| engine | cwd |\n|---|---|\n| sim | /a | b |\nGo.",
            "t.md: the settings table: line 3 has 3 cells but the header has 2; write a '|' "
            "inside a value as '\\|'",
        ),
        ("|\n|---|\n| sim |\nGo.", "t.md: the settings table: the header row (line 1) has no"),
        ("| engine | |\n|---|---|\n| sim | x |\nGo.", "t.md: column 2 (line 1) has no name"),
        ("| lock |\n|---|\n| l1 |\nGo.", "t.md: no engine: add an 'engine' column"),
        ("| engine |\n|---|\n| |\nGo.", "t.md: no engine: add an 'engine' column"),
        (ONE, "t.md: empty prompt: write the prompt as text below the settings table"),
        (ONE + "\n   \n\n", "t.md: empty prompt: write the prompt as text below the settings"),
        (
            ONE + "## Children\n| id | prompt |\n|---|---|\n| a | A. |\n",
            "t.md: empty prompt: write the prompt as text below the settings table",
        ),
    ],
)
def test_shape_errors(text, message):
    assert str(error(text)).startswith(message), str(error(text))


def test_unknown_engine_message():
    err = error("| engine |\n|---|\n| devinn |\nGo.")
    assert str(err) == (
        "t.md: column 'engine': unknown engine 'devinn'; known engines: " + ", ".join(KNOWN_ENGINES)
    )
    assert (err.column, err.value, err.path, err.line) == ("engine", "devinn", "t.md", 3)


@pytest.mark.parametrize(
    ("header", "cell", "message"),
    [
        ("timeout", "10x", "bad duration '10x': use a number with a unit"),
        ("timeout", "0", "bad duration '0': must be greater than zero"),
        ("timeout", "9" * 400, "too long"),
        ("yolo", "maybe", "'maybe' is not true or false (yes/no and 1/0 also work)"),
        ("priority", "urgent", "unknown priority 'urgent'; use one of: low, normal, high"),
        ("cost", "-1", "bad cost '-1': use a number of US dollars >= 0"),
        ("budget", "lots", "bad cost 'lots'"),
        ("cost", "nan", "bad cost 'nan'"),
        ("cost", "inf", "bad cost 'inf'"),
        ("params", "{x", "params are not valid JSON (Expecting property name"),
        ("params", '{"a": NaN}', "params are not valid JSON (NaN is not allowed in JSON)"),
        ("params", "[1, 2]", 'params must be a JSON object such as {"key": 1}, not a JSON array'),
        ("params", '"s"', "not a JSON string"),
        ("params", "[" * 100_000, "params are nested too deeply"),
        ("product", "a-b", "invalid productId 'a-b': use letters, digits, '_' or '.'"),
        ("productId", "_fleet", "invalid productId '_fleet'"),
    ],
)
def test_bad_cells_name_the_column_and_value(header, cell, message):
    err = error(f"| engine | {header} |\n|---|---|\n| sim | {cell} |\nGo.")
    assert str(err).startswith(f"t.md: column '{header}': "), str(err)
    assert message in str(err)
    assert err.column == header
    assert err.value == cell
    assert err.line == 3


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("engine | Engine", "duplicate column 'Engine' (line 1): it appears twice"),
        ("engine | cost | budget", "duplicate column 'budget' (line 1): it repeats column 'cost'"),
        ("engine | product | productId", "duplicate column 'productId' (line 1): it repeats"),
        ("engine | team | Team", "duplicate column 'Team' (line 1): it appears twice"),
    ],
)
def test_duplicate_columns(headers, message):
    count = headers.count("|") + 1
    row = "|".join(["sim"] * count)
    err = error(f"| {headers} |\n|{'---|' * count}\n| {row} |\nGo.")
    assert str(err).startswith(f"t.md: {message}"), str(err)
    assert err.column == headers.rsplit("|", 1)[-1].strip()


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("prompt", "the prompt is the text below the settings table"),
        ("children", "list children in a '## Children' section"),
        ("labels", "every unknown column is a label already"),
    ],
)
def test_reserved_columns(header, hint):
    err = error(f"| engine | {header} |\n|---|---|\n| sim | x |\nGo.")
    assert str(err).startswith(f"t.md: column '{header}': {hint}")
    assert err.column == header


def test_oversized_text_and_bytes():
    text = ONE + "x" * 200
    size = len(text.encode())
    for given in (text, text.encode()):
        err = error(given, max_bytes=100)
        assert str(err) == f"t.md: file too large: {size} bytes; the limit is 100 bytes"


def test_oversized_counts_utf8_bytes_not_characters():
    text = ONE + "é" * 60  # 60 characters, 120 bytes
    assert "file too large" in str(error(text, max_bytes=len(ONE) + 100))
    assert parse_job_spec(text, max_bytes=len(ONE) + 120).prompt == "é" * 60


def test_default_limit():
    assert MAX_SPEC_BYTES == 256 * 1024
    err = error(ONE + "x" * MAX_SPEC_BYTES)
    assert f"the limit is {MAX_SPEC_BYTES} bytes" in str(err)


def test_oversized_file(tmp_path):
    path = tmp_path / "big.md"
    path.write_text(ONE + "x" * 5000)
    with pytest.raises(JobSpecError) as caught:
        load_job_spec(path, max_bytes=1000)
    assert str(caught.value) == (
        f"big.md: file too large: {path.stat().st_size} bytes; the limit is 1000 bytes"
    )


def test_not_utf8():
    err = error(ONE.encode() + b"caf\xe9")
    assert str(err) == (
        f"t.md: not UTF-8: byte 0xe9 at offset {len(ONE) + 3} is not valid UTF-8; "
        "save the file as UTF-8"
    )


def test_unpaired_surrogate():
    assert "unpaired surrogate" in str(error(ONE + "\ud800"))


def test_without_a_source():
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec("")
    assert str(caught.value).startswith("job spec: empty file")
    assert caught.value.path is None


def test_load_names_the_file_and_overrides_apply(tmp_path):
    path = tmp_path / "job.md"
    path.write_text("| engine |\n|---|\n| devinn |\nGo.")
    with pytest.raises(JobSpecError, match=r"^job\.md: column 'engine'"):
        load_job_spec(path)
    assert load_job_spec(path, overrides={"engine": "sim"}).engine == "sim"


def test_load_a_missing_file(tmp_path):
    with pytest.raises(JobSpecError, match=r"^nope\.md: cannot read the file: No such file"):
        load_job_spec(tmp_path / "nope.md")


def test_error_is_a_value_error_and_pickles():
    err = error("| engine |\n|---|\n| devinn |\nGo.")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    assert (copy.column, copy.value, copy.path, copy.line) == (
        err.column,
        err.value,
        err.path,
        err.line,
    )


def test_not_text():
    with pytest.raises(TypeError):
        parse_job_spec(42)  # type: ignore[arg-type]


def test_failure_policy_and_preferred_labels_columns() -> None:
    spec = parse_job_spec(
        "| engine | failure policy | preferredLabels |\n|---|---|---|\n"
        "| sim | continue | gpu, fast |\n\nparent\n\n## Children\n\n"
        "| id | prompt |\n|---|---|\n| a | do a |\n"
    )
    assert spec.failure_policy == "continue"
    assert spec.preferred_labels == ["gpu", "fast"]
    assert [c.id for c in spec.children] == ["a"]
    with pytest.raises(JobSpecError, match="failurePolicy|failure"):
        parse_job_spec("| engine | failurePolicy |\n|---|---|\n| sim | sometimes |\n\np\n")


def test_repo_and_base_columns() -> None:
    spec = parse_job_spec(
        "| engine | repo | base |\n|---|---|---|\n| codex | git@example.com:o/r.git | main |\n\nfix"
    )
    assert (spec.repo, spec.base_ref) == ("git@example.com:o/r.git", "main")
    alias = parse_job_spec(
        "| engine | repository | baseRef |\n|---|---|---|\n| shell | /r | v1 |\nx"
    )
    assert (alias.repo, alias.base_ref) == ("/r", "v1")
    plain = parse_job_spec("| engine |\n|---|\n| shell |\nx")
    assert (plain.repo, plain.base_ref) == (None, None)


@pytest.mark.parametrize(
    ("column", "value"), [("base", "main..dev"), ("base", "-x"), ("repo", "--upload-pack=x")]
)
def test_bad_repo_or_base_names_the_column(column: str, value: str) -> None:
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(f"| engine | {column} |\n|---|---|\n| shell | {value} |\nx", source="j.md")
    assert caught.value.column == column
    assert str(caught.value).startswith(f"j.md: column '{column}': invalid")
