"""Invariant 8: the routing package imports only the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import routing

FORBIDDEN_STDLIB = {"os", "time", "random", "secrets", "socket", "subprocess", "logging", "io"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_routing_imports_only_the_standard_library():
    files = sorted(Path(routing.__file__).parent.glob("*.py"))
    assert files
    for path in files:
        for root in imported_roots(path):
            allowed = root == "routing" or root in sys.stdlib_module_names
            assert allowed, f"{path.name} imports {root}"
            assert root not in FORBIDDEN_STDLIB, f"{path.name} imports {root} (I/O, clock or RNG)"
