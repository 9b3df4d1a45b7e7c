"""The import arrows of DESIGN.md section 2: model <- hw <- sim <- boards <- mulfree."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "model": {"amaranth", "amaranth_boards", "cocotb", "hw", "sim", "boards", "mulfree"},
    "hw": {"cocotb", "sim", "boards", "mulfree"},
    "sim": {"boards", "mulfree"},
    "boards": {"mulfree"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package])
                 for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_imported_roots_sees_both_import_forms(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import amaranth.lib.wiring\nfrom sim.toolchain import report\n"
                      "from . import sibling\n")
    assert imported_roots(source) == {"amaranth", "sim"}
