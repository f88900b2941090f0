"""The job-spec file: a Markdown file whose first table holds the settings, then the prompt.

This docstring is the reference for the format (``docs/job-spec.md`` shows it with more
examples). A job spec looks like this::

    # Add retry support to the HTTP client

    | engine | cwd | yolo | lock | timeout | priority | product |
    |---|---|---|---|---|---|---|
    | devin | /path/to/repo | true | http-client | 10h | high | demo |
    ROLE: Senior engineer. Add retries with backoff to the HTTP client ...

The settings table
    The first thing in the file, after optional blank lines and Markdown headings. It is a
    header row, a separator row (``|---|---|``, colons allowed) and exactly one row of values.
    Every row starts with ``|`` (the trailing ``|`` is optional); the table ends at the first
    line that does not start with ``|``, which may be the first line of the prompt. Cells are
    trimmed; write a ``|`` inside a value as ``\\|`` (every other backslash is kept as written,
    so ``C:\\repo`` works). An empty cell means "not given": the default applies.

    Column names are case-insensitive and ignore spaces, ``-`` and ``_`` (``productId``,
    ``product-id``, ``Product ID`` are the same column):

    =====================  ==============================================================
    column                 value
    =====================  ==============================================================
    ``engine``             required; one of ``KNOWN_ENGINES`` (case-insensitive)
    ``cwd``                working directory or repository (default ``.``)
    ``yolo``               unattended mode: true/false, yes/no, 1/0 (default false)
    ``lock``               a named lock: two jobs with the same lock never run at once
    ``timeout``            ``90s``, ``15m``, ``10h``, ``1d``, ``2w``, ``500ms`` or bare
                           seconds (default 1h); also ``timeoutS``
    ``priority``           low, normal, high or critical (default normal)
    ``product``            the product id (also ``productId``): letters, digits, ``_``, ``.``
    ``title``              a short title; else the first ``# Heading`` above the table
    ``capabilities``       comma-separated capabilities a factory must have
    ``estimatedCostUsd``   estimated cost in US dollars, >= 0, optional ``$``; also
                           ``cost`` or ``budget``
    ``params``             a JSON object handed to the engine, e.g. ``{"durationS": 2}``
    ``failurePolicy``      for a parent: ``fail-fast`` (default) or ``continue``
    ``preferredLabels``    comma-separated factory labels that score higher (affinity)
    ``repo``               a repository (path or git URL the factory can reach): the job
                           runs in a git worktree on branch ``gigafactory/<jobId>``; also
                           ``repository``
    ``base``               the branch, tag or commit that branch starts from (default: the
                           repository's HEAD); also ``baseRef``
    anything else          kept as a label: column name -> cell text
    =====================  ==============================================================

    Two columns naming the same setting (``cost`` and ``budget``) are an error, and so are
    ``prompt``, ``children`` and ``labels`` columns (the prompt is the text below the table,
    children have their own section, every unknown column is a label already).

The prompt
    Everything after the settings table, except a ``## Children`` section, trimmed of
    leading and trailing blank space and otherwise kept verbatim (line endings become
    ``\\n``). It must not be empty. It may contain further tables: only the first table of
    the file is the settings table (to start the prompt with a table, leave a blank line
    after the settings table).

The ``## Children`` section (optional)
    A level-2 heading ``## Children`` (case-insensitive, outside fenced code blocks),
    followed (after optional blank lines) by a table with one row per child (subtask)::

        ## Children

        | id | engine | dependsOn | prompt |
        |---|---|---|---|
        | design | sim | | Write the design note. |
        | impl | sim | design | Implement retries. |
        | tests | sim | design | Write the tests. |
        | review | | impl, tests | Review both. |

    The section is the heading plus its table; text after the table is prompt again. The
    columns are those of the settings table plus ``id`` (required: letters, digits, ``_``,
    ``-``, ``.``; unique within the table), ``prompt`` (required; ``<br>`` is a line break),
    ``dependsOn`` (comma-separated ids of sibling children) and ``dependencyKind``
    (succeeded, failed or finished: when a dependency counts as satisfied; default
    succeeded). A child inherits ``engine``, ``cwd``, ``yolo``, ``product`` and ``timeout``
    from the parent unless its row gives them. Whether the ids in ``dependsOn`` exist and
    whether the graph has cycles is checked when the job is submitted, not here.

Limits and errors
    A file is at most ``MAX_SPEC_BYTES`` bytes of UTF-8 (a byte-order mark is ignored).
    Every problem raises ``JobSpecError``, whose message names the source, the line, the
    column and the value, e.g.
    ``phase3-job.md: column 'engine': unknown engine 'devinn'; known engines: ...``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gigafactory.durations import parse_duration
from gigafactory.models import KNOWN_ENGINES, DependencyKind, JobSpec, Priority

__all__ = [
    "INHERITED_FIELDS",
    "MAX_SPEC_BYTES",
    "JobSpecError",
    "inherit_child_fields",
    "load_job_spec",
    "parse_job_spec",
    "parse_job_spec_fields",
]

MAX_SPEC_BYTES = 256 * 1024

# camelCase fields a child takes from its parent unless its own row gives them.
INHERITED_FIELDS: tuple[str, ...] = ("engine", "cwd", "yolo", "productId", "timeoutS")

_CHILDREN_SECTION = "'## Children'"
_SHOW_MAX = 80

# Normalised column name -> camelCase JobSpec field.
_SETTINGS_COLUMNS: dict[str, str] = {
    "engine": "engine",
    "cwd": "cwd",
    "yolo": "yolo",
    "lock": "lock",
    "timeout": "timeoutS",
    "timeouts": "timeoutS",
    "priority": "priority",
    "product": "productId",
    "productid": "productId",
    "title": "title",
    "capabilities": "capabilities",
    "estimatedcostusd": "estimatedCostUsd",
    "estimatedcost": "estimatedCostUsd",
    "costusd": "estimatedCostUsd",
    "cost": "estimatedCostUsd",
    "budgetusd": "estimatedCostUsd",
    "budget": "estimatedCostUsd",
    "params": "params",
    "failurepolicy": "failurePolicy",
    "preferredlabels": "preferredLabels",
    "repo": "repo",
    "repository": "repo",
    "base": "baseRef",
    "baseref": "baseRef",
}
_CHILD_COLUMNS: dict[str, str] = {
    **_SETTINGS_COLUMNS,
    "id": "id",
    "dependson": "dependsOn",
    "dependencykind": "dependencyKind",
    "prompt": "prompt",
}
_RESERVED_COLUMNS: dict[str, str] = {
    "prompt": "the prompt is the text below the settings table",
    "children": "list children in a '## Children' section below the settings table",
    "labels": "every unknown column is a label already: name the column after the label",
}
_CHILD_RESERVED_COLUMNS: dict[str, str] = {
    "children": "children cannot have children of their own",
    "labels": "every unknown column is a label already: name the column after the label",
}

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_CHILDREN_HEADING = re.compile(r"^ {0,3}##[ \t]+children(?:[ \t]+#+)?[ \t]*$", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_CHILD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_NORMALISE = re.compile(r"[\s_-]+")


class JobSpecError(ValueError):
    """A job spec that cannot be accepted; ``str(err)`` says where and why.

    Attributes:
        message: The reason, without the source prefix.
        path: The source (file name, "api", ...) or None.
        column: The column (or field) at fault, as the user wrote it, or None.
        value: The offending value, or None.
        line: The 1-based line of the file at fault, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        column: str | None = None,
        value: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.column = column
        self.value = value
        self.line = line
        super().__init__(f"{path or 'job spec'}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.message, self.path, self.column, self.value, self.line))


def _rebuild_error(
    message: str, path: str | None, column: str | None, value: str | None, line: int | None
) -> JobSpecError:
    return JobSpecError(message, path=path, column=column, value=value, line=line)


# --- public API -------------------------------------------------------------------------------
def parse_job_spec(
    text: str | bytes,
    *,
    source: str | None = None,
    max_bytes: int = MAX_SPEC_BYTES,
    overrides: Mapping[str, Any] | None = None,
) -> JobSpec:
    """Parse and validate a job-spec file.

    Args:
        text: The file's content, as text or as UTF-8 bytes.
        source: Where it came from (a file name, "api"), named in error messages.
        max_bytes: The largest accepted size in bytes of UTF-8.
        overrides: JobSpec fields (camelCase or snake_case, ``timeout`` too) that win over
            the file's values; a None value is ignored. An override replaces the file's whole
            value (``labels`` and ``params`` are not merged) and is inherited by children.

    Returns:
        The validated spec. Only the fields the file or the overrides give are set (see
        ``JobSpec.model_fields_set``); the rest are defaults.

    Raises:
        JobSpecError: the file or an override is not acceptable; the message says why.
    """
    doc = _parse_document(text, source=source, max_bytes=max_bytes)
    fields = dict(doc.fields)
    origins = dict(doc.origins)
    child_origins = doc.child_origins
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        name = _FIELD_KEYS.get(key)
        if name is None:
            raise JobSpecError(
                f"unknown override field {key!r}; known fields: {', '.join(_FIELD_NAMES)}",
                path=source,
                column=key,
            )
        fields[name] = value
        origins[name] = _Origin("field", key)
        if name == "children":
            child_origins = []
    if not _given(fields.get("engine")):
        raise JobSpecError(
            "no engine: add an 'engine' column to the settings table "
            f"(one of: {', '.join(KNOWN_ENGINES)})",
            path=source,
            column="engine",
        )
    prompt = fields.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise JobSpecError(
            "empty prompt: write the prompt as text below the settings table",
            path=source,
            column="prompt",
            value=prompt,
        )
    fields = inherit_child_fields(fields)
    try:
        spec = JobSpec.model_validate(fields)
    except ValidationError as exc:
        raise _validation_error(exc, source, origins, child_origins) from None
    if not math.isfinite(spec.timeout_s):
        origin = origins.get("timeoutS", _Origin("field", "timeoutS"))
        raise JobSpecError(
            f"{origin.describe()}: timeout must be finite",
            path=source,
            column=origin.name,
            value=str(fields.get("timeoutS")),
            line=origin.line,
        )
    return spec


def load_job_spec(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    max_bytes: int = MAX_SPEC_BYTES,
) -> JobSpec:
    """Read and parse a job-spec file; errors name the file.

    Args:
        path: The file.
        overrides: As for ``parse_job_spec``.
        max_bytes: The largest accepted file size in bytes.

    Returns:
        The validated spec.

    Raises:
        JobSpecError: the file cannot be read or is not an acceptable job spec.
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            # One byte more than allowed is enough to tell "too large" without reading it all.
            data = handle.read(max_bytes + 1)
            size = len(data)
            if size > max_bytes:
                size = max(size, file.stat().st_size)
    except OSError as exc:
        raise JobSpecError(f"cannot read the file: {exc.strerror or exc}", path=file.name) from exc
    if size > max_bytes:
        raise _too_large(size, max_bytes, file.name)
    return parse_job_spec(data, source=file.name, max_bytes=max_bytes, overrides=overrides)


def parse_job_spec_fields(
    text: str | bytes,
    *,
    source: str | None = None,
    max_bytes: int = MAX_SPEC_BYTES,
) -> dict[str, Any]:
    """The fields a job-spec file gives, camelCase, before the JobSpec is validated.

    Each cell is already converted (``timeoutS`` in seconds, ``yolo`` a bool, ``priority``
    its lower-case value, ``capabilities`` a list, ``params`` a dict, unknown columns in
    ``labels``); fields the file leaves out are absent. ``children`` items are
    ``{"id", "dependsOn", ["dependencyKind"], "spec"}`` whose ``spec`` holds only the row's
    own cells: call ``inherit_child_fields`` after merging, as ``parse_job_spec`` does.

    Raises:
        JobSpecError: the file's shape or one of its cells is not acceptable. Whether the
            engine is known, and a missing engine or prompt, are checked by
            ``parse_job_spec`` after overrides are applied.
    """
    return _parse_document(text, source=source, max_bytes=max_bytes).fields


def inherit_child_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` whose children (and theirs, all the way down) take
    ``INHERITED_FIELDS`` they do not set from their own parent."""
    result = dict(fields)
    children = result.get("children")
    if not isinstance(children, list):
        return result
    filled: list[Any] = []
    for child in children:
        spec = child.get("spec") if isinstance(child, Mapping) else None
        if not isinstance(spec, Mapping):
            filled.append(child)
            continue
        own: dict[str, Any] = {str(_FIELD_KEYS.get(key, key)): value for key, value in spec.items()}
        for name in INHERITED_FIELDS:
            if own.get(name) is None and result.get(name) is not None:
                own[name] = result[name]
        filled.append({**child, "spec": inherit_child_fields(own)})
    result["children"] = filled
    return result


# --- document structure -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Origin:
    """Where a field's value came from, for error messages."""

    kind: str  # "column", "field" (an override) or "heading"
    name: str
    where: str = ""  # e.g. "'## Children' row 2 (line 9, id 'impl'): "
    line: int | None = None

    def describe(self) -> str:
        return f"{self.where}{self.kind} {self.name!r}"


@dataclass
class _Document:
    fields: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, _Origin] = field(default_factory=dict)
    child_origins: list[dict[str, _Origin]] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int  # 1-based
    cells: list[str]


@dataclass(frozen=True)
class _Table:
    header: _Row
    rows: list[_Row]


def _parse_document(text: str | bytes, *, source: str | None, max_bytes: int) -> _Document:
    content = _decode(text, source, max_bytes)
    if not content.strip():
        raise JobSpecError(
            "empty file: a job spec is a settings table followed by the prompt", path=source
        )
    lines = content.split("\n")
    start, title = _find_settings_table(lines, source)
    end = _table_end(lines, start)
    table = _read_table(lines, start, end, "the settings table", source)
    if not table.rows:
        raise JobSpecError(
            f"the settings table has no value row: add one row of values below the "
            f"separator (line {table.header.line + 1})",
            path=source,
            line=table.header.line + 1,
        )
    if len(table.rows) > 1:
        first, last = table.rows[0].line, table.rows[-1].line
        raise JobSpecError(
            f"the settings table has {len(table.rows)} value rows (lines {first}-{last}); it "
            "must have exactly one (one job per file). If the prompt starts with a table, "
            "leave a blank line after the settings table",
            path=source,
            line=table.rows[1].line,
        )
    doc = _Document()
    columns = _columns(table.header, _SETTINGS_COLUMNS, _RESERVED_COLUMNS, source, "")
    _read_cells(columns, table.rows[0], doc.fields, doc.origins, source, "")
    prompt_lines, children = _split_body(lines, end, source)
    prompt = "\n".join(prompt_lines).strip()
    if prompt:
        doc.fields["prompt"] = prompt
    if title is not None and "title" not in doc.fields:
        doc.fields["title"] = title
        doc.origins["title"] = _Origin("heading", f"# {title}")
    if children is not None:
        doc.fields["children"], doc.child_origins = _read_children(lines, children, source)
    return doc


def _decode(text: str | bytes, source: str | None, max_bytes: int) -> str:
    if isinstance(text, str):
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise JobSpecError(
                f"not valid text: character {exc.start} is an unpaired surrogate", path=source
            ) from None
        if size > max_bytes:
            raise _too_large(size, max_bytes, source)
        content = text
    elif isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        if len(raw) > max_bytes:
            raise _too_large(len(raw), max_bytes, source)
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JobSpecError(
                f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid "
                "UTF-8; save the file as UTF-8",
                path=source,
            ) from None
    else:
        raise TypeError(f"a job spec is str or bytes, not {type(text).__name__}")
    content = content.removeprefix("\ufeff")
    return content.replace("\r\n", "\n").replace("\r", "\n")


def _too_large(size: int, max_bytes: int, source: str | None) -> JobSpecError:
    return JobSpecError(
        f"file too large: {size} bytes; the limit is {max_bytes} bytes", path=source
    )


def _is_table_line(line: str) -> bool:
    return line.lstrip().startswith("|")


def _find_settings_table(lines: list[str], source: str | None) -> tuple[int, str | None]:
    """The index of the settings table's first line, and the title of a `# ` heading above."""
    title: str | None = None
    for index, line in enumerate(lines):
        if _is_table_line(line):
            return index, title
        if not line.strip():
            continue
        heading = _HEADING.match(line)
        if heading is not None:
            if title is None and len(heading.group(1)) == 1 and heading.group(2):
                title = heading.group(2).strip() or None
            continue
        raise JobSpecError(
            "no settings table: the file must start with a Markdown table (a header row, a "
            "|---| separator row and one row of values), optionally after a '# Title' "
            f"heading; line {index + 1} is {_show(line.strip())}",
            path=source,
            line=index + 1,
        )
    raise JobSpecError(
        "no settings table: the file must start with a Markdown table (a header row, a "
        "|---| separator row and one row of values), e.g. '| engine |' / '|---|' / '| sim |'",
        path=source,
    )


def _table_end(lines: list[str], start: int) -> int:
    end = start
    while end < len(lines) and _is_table_line(lines[end]):
        end += 1
    return end


def _split_row(line: str) -> list[str]:
    """The trimmed cells of a table row; `\\|` is a literal pipe, other backslashes stay."""
    text = line.strip()
    cells: list[str] = []
    cell: list[str] = []
    index = 1  # past the leading pipe
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1 : index + 2] == "|":
            cell.append("|")
            index += 2
            continue
        if char == "|":
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(char)
        index += 1
    if cell:  # no trailing pipe
        cells.append("".join(cell).strip())
    return cells


def _is_separator(cells: list[str]) -> bool:
    return bool(cells) and all(_SEPARATOR_CELL.match(cell) for cell in cells)


def _read_table(lines: list[str], start: int, end: int, what: str, source: str | None) -> _Table:
    """The header and value rows of the table in ``lines[start:end]``, shape-checked."""
    header = _Row(start + 1, _split_row(lines[start]))
    if not header.cells:
        raise JobSpecError(
            f"{what}: the header row (line {header.line}) has no columns",
            path=source,
            line=header.line,
        )
    separator = _split_row(lines[start + 1]) if start + 1 < end else []
    if not _is_separator(separator):
        if start + 1 < len(lines):
            found = f"; line {start + 2} is {_show(lines[start + 1].strip())}"
        else:
            found = "; the file ends there"
        raise JobSpecError(
            f"{what}: the header row (line {header.line}) must be followed by a separator "
            f"row such as |---|---|{found}",
            path=source,
            line=start + 2,
        )
    if len(separator) != len(header.cells):
        raise JobSpecError(
            f"{what}: the separator row (line {start + 2}) has {len(separator)} cells but "
            f"the header has {len(header.cells)}",
            path=source,
            line=start + 2,
        )
    rows: list[_Row] = []
    for index in range(start + 2, end):
        row = _Row(index + 1, _split_row(lines[index]))
        if len(row.cells) != len(header.cells):
            raise JobSpecError(
                f"{what}: line {row.line} has {len(row.cells)} cells but the header has "
                f"{len(header.cells)}; write a '|' inside a value as '\\|'",
                path=source,
                line=row.line,
            )
        rows.append(row)
    return _Table(header, rows)


def _normalise(name: str) -> str:
    return _NORMALISE.sub("", name).lower()


def _columns(
    header: _Row,
    known: Mapping[str, str],
    reserved: Mapping[str, str],
    source: str | None,
    where: str,
) -> list[tuple[str, str | None]]:
    """Each column's name as written and its camelCase field (None: a label)."""
    columns: list[tuple[str, str | None]] = []
    seen: dict[str, str] = {}
    for position, name in enumerate(header.cells, start=1):
        if not name:
            raise JobSpecError(
                f"{where}column {position} (line {header.line}) has no name",
                path=source,
                line=header.line,
            )
        key = _normalise(name)
        if key in reserved:
            raise JobSpecError(
                f"{where}column {name!r}: {reserved[key]}",
                path=source,
                column=name,
                line=header.line,
            )
        target = known.get(key)
        identity = target if target is not None else f"label:{key}"
        if identity in seen:
            first = seen[identity]
            same = "appears twice" if _normalise(first) == key else f"repeats column {first!r}"
            raise JobSpecError(
                f"{where}duplicate column {name!r} (line {header.line}): it {same}",
                path=source,
                column=name,
                line=header.line,
            )
        seen[identity] = name
        columns.append((name, target))
    return columns


def _read_cells(
    columns: list[tuple[str, str | None]],
    row: _Row,
    fields: dict[str, Any],
    origins: dict[str, _Origin],
    source: str | None,
    where: str,
) -> None:
    """Convert one value row into ``fields``; unknown columns go to ``labels``."""
    labels: dict[str, str] = {}
    for (name, target), cell in zip(columns, row.cells, strict=True):
        if not cell:
            continue
        if target is None:
            labels[name] = cell
            continue
        try:
            fields[target] = _CONVERTERS.get(target, _text)(cell)
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else "params are nested too deeply"
            raise JobSpecError(
                f"{where}column {name!r}: {reason}",
                path=source,
                column=name,
                value=cell,
                line=row.line,
            ) from None
        origins[target] = _Origin("column", name, where, row.line)
    if labels:
        fields["labels"] = labels
        origins["labels"] = _Origin("column", next(iter(labels)), where, row.line)


def _split_body(
    lines: list[str], start: int, source: str | None
) -> tuple[list[str], tuple[int, int] | None]:
    """The prompt's lines and the (start, end) lines of the children table, if any."""
    prompt: list[str] = []
    children: tuple[int, int] | None = None
    heading_line = 0
    fence: str | None = None
    index = start
    while index < len(lines):
        line = lines[index]
        opener = _FENCE.match(line)
        if fence is not None:
            if opener is not None and opener.group(1)[0] == fence[0]:
                if len(opener.group(1)) >= len(fence) and not line.strip().strip(fence[0]):
                    fence = None
        elif opener is not None:
            fence = opener.group(1)
        elif _CHILDREN_HEADING.match(line):
            if children is not None:
                raise JobSpecError(
                    f"more than one {_CHILDREN_SECTION} section (lines {heading_line} and "
                    f"{index + 1}): list every child in one table",
                    path=source,
                    line=index + 1,
                )
            table = index + 1
            while table < len(lines) and not lines[table].strip():
                table += 1
            if table >= len(lines) or not _is_table_line(lines[table]):
                raise JobSpecError(
                    f"the {_CHILDREN_SECTION} heading (line {index + 1}) must be followed by "
                    "a table with one row per child",
                    path=source,
                    line=index + 1,
                )
            end = _table_end(lines, table)
            children = (table, end)
            heading_line = index + 1
            index = end
            continue
        prompt.append(line)
        index += 1
    return prompt, children


def _read_children(
    lines: list[str], span: tuple[int, int], source: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, _Origin]]]:
    """The children of the ``## Children`` table in ``lines[span[0]:span[1]]``."""
    table = _read_table(lines, span[0], span[1], f"the {_CHILDREN_SECTION} table", source)
    section = f"{_CHILDREN_SECTION} table: "
    if not table.rows:
        raise JobSpecError(
            f"the {_CHILDREN_SECTION} table has no rows: add one row per child",
            path=source,
            line=table.header.line,
        )
    columns = _columns(table.header, _CHILD_COLUMNS, _CHILD_RESERVED_COLUMNS, source, section)
    for required in ("id", "prompt"):
        if all(target != required for _, target in columns):
            raise JobSpecError(
                f"the {_CHILDREN_SECTION} table has no {required!r} column "
                f"(line {table.header.line})",
                path=source,
                column=required,
                line=table.header.line,
            )
    id_column = next(name for name, target in columns if target == "id")
    children: list[dict[str, Any]] = []
    all_origins: list[dict[str, _Origin]] = []
    rows_by_id: dict[str, int] = {}
    for number, row in enumerate(table.rows, start=1):
        child_id = row.cells[[target for _, target in columns].index("id")]
        where = f"{_CHILDREN_SECTION} row {number} (line {row.line}"
        where += f", id {child_id!r}): " if child_id else "): "
        if not child_id:
            raise JobSpecError(
                f"{where}column {id_column!r}: every child needs an id",
                path=source,
                column=id_column,
                line=row.line,
            )
        if child_id in rows_by_id:
            raise JobSpecError(
                f"{where}column {id_column!r}: duplicate child id {child_id!r} "
                f"(also row {rows_by_id[child_id]})",
                path=source,
                column=id_column,
                value=child_id,
                line=row.line,
            )
        rows_by_id[child_id] = number
        cells: dict[str, Any] = {}
        origins: dict[str, _Origin] = {}
        _read_cells(columns, row, cells, origins, source, where)
        if not cells.get("prompt"):
            name = next(name for name, target in columns if target == "prompt")
            raise JobSpecError(
                f"{where}column {name!r}: empty prompt: every child needs a prompt",
                path=source,
                column=name,
                line=row.line,
            )
        child: dict[str, Any] = {"id": cells.pop("id"), "dependsOn": cells.pop("dependsOn", [])}
        if "dependencyKind" in cells:
            child["dependencyKind"] = cells.pop("dependencyKind")
        child["spec"] = cells
        children.append(child)
        all_origins.append(origins)
    return children, all_origins


# --- cells ------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    """A value for a message: repr, shortened."""
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else f"{text[: _SHOW_MAX - 4]}...{text[-1]}"


def _text(cell: str) -> str:
    return cell


def _engine(cell: str) -> str:
    return cell.lower()


def _yolo(cell: str) -> bool:
    value = cell.lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise ValueError(f"{_show(cell)} is not true or false (yes/no and 1/0 also work)")


def _timeout(cell: str) -> float:
    seconds = parse_duration(cell)
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {_show(cell)}: too long")
    return seconds


def _priority(cell: str) -> str:
    value = cell.lower()
    if value not in {p.value for p in Priority}:
        raise ValueError(
            f"unknown priority {_show(cell)}; use one of: {', '.join(p.value for p in Priority)}"
        )
    return value


def _cost(cell: str) -> float:
    text = cell.removeprefix("$").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"bad cost {_show(cell)}: use a number of US dollars >= 0, e.g. 2.50 or $2.50"
        )
    return value


def _list(cell: str) -> list[str]:
    items = (item.strip() for item in cell.split(","))
    return list(dict.fromkeys(item for item in items if item))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _params(cell: str) -> dict[str, Any]:
    try:
        value = json.loads(cell, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"params are not valid JSON ({exc.msg} at character {exc.pos + 1}): {_show(cell)}"
        ) from None
    except ValueError as exc:
        raise ValueError(f"params are not valid JSON ({exc}): {_show(cell)}") from None
    if not isinstance(value, dict):
        raise ValueError(
            f'params must be a JSON object such as {{"key": 1}}, not a JSON '
            f"{_json_type(value)}: {_show(cell)}"
        )
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _dependency_kind(cell: str) -> str:
    value = cell.lower()
    if value not in {k.value for k in DependencyKind}:
        raise ValueError(
            f"unknown dependency kind {_show(cell)}; use one of: "
            f"{', '.join(k.value for k in DependencyKind)}"
        )
    return value


def _child_id(cell: str) -> str:
    if not _CHILD_ID.match(cell):
        raise ValueError(
            f"bad child id {_show(cell)}: use up to 64 letters, digits, '_', '-' or '.'"
        )
    return cell


def _child_prompt(cell: str) -> str:
    return _BR.sub("\n", cell).strip()


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "engine": _engine,
    "yolo": _yolo,
    "timeoutS": _timeout,
    "priority": _priority,
    "capabilities": _list,
    "preferredLabels": _list,
    "estimatedCostUsd": _cost,
    "params": _params,
    "id": _child_id,
    "dependsOn": _list,
    "dependencyKind": _dependency_kind,
    "prompt": _child_prompt,
}


def _given(value: Any) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


# --- overrides and validation -----------------------------------------------------------------
def _field_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for name, info in JobSpec.model_fields.items():
        alias = info.alias or name
        keys[name] = alias
        keys[alias] = alias
    keys["timeout"] = "timeoutS"
    return keys


_FIELD_KEYS = _field_keys()
_FIELD_NAMES = tuple(dict.fromkeys(_FIELD_KEYS.values()))


def _validation_error(
    exc: ValidationError,
    source: str | None,
    origins: Mapping[str, _Origin],
    child_origins: list[dict[str, _Origin]],
) -> JobSpecError:
    """One JobSpecError for a ValidationError, naming each bad column or field."""
    messages: list[str] = []
    first: tuple[_Origin, Any] | None = None
    for error in exc.errors():
        origin = _origin_of(error["loc"], origins, child_origins)
        reason = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if error["type"] == "missing":
            value = None
        elif error["type"] != "value_error":
            reason = f"{reason} (got {_show(value)})"
        messages.append(f"{origin.describe()}: {reason}")
        if first is None:
            first = (origin, value)
    origin, value = first if first is not None else (_Origin("field", "spec"), None)
    return JobSpecError(
        "; ".join(messages),
        path=source,
        column=origin.name,
        value=None if value is None else str(value),
        line=origin.line,
    )


def _origin_of(
    loc: tuple[int | str, ...],
    origins: Mapping[str, _Origin],
    child_origins: list[dict[str, _Origin]],
) -> _Origin:
    if not loc:
        return _Origin("field", "spec")
    if loc[0] == "children" and len(loc) > 1 and isinstance(loc[1], int):
        index = loc[1]
        rest = [str(part) for part in loc[2:]]
        name = rest[1] if len(rest) > 1 and rest[0] == "spec" else ".".join(rest) or "children"
        known = child_origins[index] if index < len(child_origins) else {}
        origin = known.get(name)
        if origin is not None:
            return origin
        where = next(iter(known.values())).where if known else f"children item {index + 1}: "
        return _Origin("field", name, where)
    name = str(loc[0])
    return origins.get(name, _Origin("field", ".".join(str(part) for part in loc)))
