"""The layers of docs/architecture.md, checked on every import statement.

1. entry points (launch/, bench/) import anything; nothing imports them;
2. adapters: api/ (no route imports another route), activities/ (never workflows/),
   workflows/ (only the pure domain modules, no I/O);
3. services (gigafactory/services/) and 4. domain and store (gigafactory/): never an
   adapter or an entry point;
5. routing/: the standard library only (tests/routing/test_purity.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What workflow code may import from the domain package: no I/O, no clock, no randomness.
PURE_DOMAIN = {
    "gigafactory.budgets",
    "gigafactory.contracts",
    "gigafactory.dag",
    "gigafactory.durations",
    "gigafactory.job_rules",
    "gigafactory.models",
    "gigafactory.policies",
    "gigafactory.search_attributes",
    "gigafactory.workflow_view",
}


def modules_imported(path: Path) -> Iterator[str]:
    """Every absolute module an import statement of `path` names (`from a import b` gives
    `a` and `a.b`, so that importing a submodule by name is seen too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def python_files(*folders: str) -> list[Path]:
    files = [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]
    assert files, f"no Python files under {folders}"
    return files


def offenders(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in modules_imported(path)
        if module.split(".")[0] in forbidden
    ]


def test_the_domain_and_services_import_no_adapter_and_no_entry_point() -> None:
    assert (
        offenders(
            python_files("gigafactory"), ("api", "activities", "workflows", "launch", "bench")
        )
        == []
    )


def test_adapters_import_no_entry_point() -> None:
    assert offenders(python_files("api", "activities", "workflows"), ("launch", "bench")) == []


def test_activities_import_no_workflow_code_and_the_api_neither() -> None:
    assert offenders(python_files("activities"), ("workflows", "api")) == []
    assert offenders(python_files("api"), ("workflows", "activities")) == []


def test_no_route_imports_another_route() -> None:
    found = [
        f"{path.name} imports {module}"
        for path in python_files("api/routes")
        for module in modules_imported(path)
        if module.startswith("api.routes.") and module.split(".")[2] != path.stem
    ]
    assert found == []


def test_no_route_touches_the_store_or_its_backend() -> None:
    found = [
        f"{path.name} imports {module}"
        for path in python_files("api/routes")
        for module in modules_imported(path)
        if module.startswith("gigafactory.store")
    ]
    assert found == []
    for path in python_files("api/routes"):
        assert ".backend." not in path.read_text(), f"{path.name} reaches into a backend"


def test_no_ui_page_imports_another_page_or_the_store() -> None:
    """The web UI's pages are routes too: shared helpers live beside them, not in a page."""
    found = [
        f"{path.name} imports {module}"
        for path in python_files("api/ui/pages")
        for module in modules_imported(path)
        if (module.startswith("api.ui.pages.") and module.split(".")[3] != path.stem)
        or module.startswith("api.routes")
        or module.startswith("gigafactory.store")
    ]
    assert found == []


def test_workflows_import_only_pure_domain_code() -> None:
    found = []
    for path in python_files("workflows"):
        for module in modules_imported(path):
            root = module.split(".")[0]
            if root == "gigafactory" and not any(
                module == pure or module.startswith(f"{pure}.") for pure in PURE_DOMAIN
            ):
                if module != "gigafactory":
                    found.append(f"{path.relative_to(ROOT)} imports {module}")
            elif root in ("activities", "api", "launch", "bench", "azure", "httpx", "aiosqlite"):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    assert found == []


@pytest.mark.parametrize(
    ("line", "caught"),
    [
        ("from api.routes.jobs import job_out", "api.routes.jobs"),
        ("import workflows.job", "workflows.job"),
        ("from gigafactory.store import backend", "gigafactory.store.backend"),
    ],
)
def test_the_import_scanner_sees_each_form(tmp_path: Path, line: str, caught: str) -> None:
    """The checks above can fail: each import form they rely on is seen."""
    source = tmp_path / "m.py"
    source.write_text(line + "\n")
    assert caught in set(modules_imported(source))
