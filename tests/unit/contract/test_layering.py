"""The contract sits at the bottom: it imports nothing of winequality outside itself.

Every import statement is checked, module-level and inside functions (lazy imports included),
by parsing the source, so a cycle cannot hide behind an import that only runs later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import winequality.contract
from winequality.export import triton_repository

CONTRACT = Path(winequality.contract.__file__).parent
MODULES = sorted(CONTRACT.glob("*.py"))


def imported(path: Path) -> set[str]:
    """Absolute names of every module the source imports, wherever the statement is."""
    names: set[str] = set()
    package = "winequality.contract"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def first_party(names: set[str]) -> set[str]:
    return {n for n in names if n == "winequality" or n.startswith("winequality.")}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_contract_imports_nothing_of_winequality_outside_the_contract(path: Path) -> None:
    outside = {
        n
        for n in first_party(imported(path))
        if n != "winequality.contract" and not n.startswith("winequality.contract.")
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"


def test_the_parser_finds_function_level_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "def f():\n    from winequality.serving import app\n    import winequality.data\n"
    )
    assert first_party(imported(source)) >= {"winequality.serving.app", "winequality.data"}


def test_the_triton_copy_ships_every_contract_module_the_shipped_ones_import() -> None:
    shipped = {m.__name__ for m in triton_repository.SHIPPED_MODULES}
    for module in triton_repository.SHIPPED_MODULES:
        # Names with two dots are modules of the contract ("winequality.contract.schema"); with
        # three, names imported from one ("winequality.contract.problems.Problem").
        needed = {n for n in first_party(imported(Path(str(module.__file__)))) if n.count(".") == 2}
        assert needed <= shipped, f"{module.__name__} needs {sorted(needed - shipped)} in Triton"
