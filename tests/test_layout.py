"""The package layout: modules that moved keep their old import paths."""

import ast
import importlib
from pathlib import Path

import pytest

import pyro_lfi


@pytest.mark.parametrize("old,new", sorted(pyro_lfi.MOVED_MODULES.items()))
def test_old_module_paths_import_the_moved_module(old, new):
    assert importlib.import_module(f"pyro_lfi.{old}") is importlib.import_module(f"pyro_lfi.{new}")


def test_old_paths_leave_the_public_functions_alone():
    import pyro_lfi.compare
    import pyro_lfi.simulate

    assert callable(pyro_lfi.simulate) and callable(pyro_lfi.compare)
    from pyro_lfi.sites import ModelSites

    assert ModelSites is pyro_lfi.model.ModelSites


# -- the shape of the code: what the package promises a reader (see ARCHITECTURE.md) ----------------

PACKAGE = Path(pyro_lfi.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
#: Lower layers never import higher ones at module level (a function may, for old file formats).
LAYERS = ["model", "simulation", "guide", "likelihood", "infer"]


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path):
    """``(absolute module, names)`` of every module-level import, outside ``TYPE_CHECKING``."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module, [a.name for a in node.names]


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_and_functions_are_short(path):
    tree = ast.parse(path.read_text())
    assert len(path.read_text().splitlines()) <= 300
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno - node.lineno + 1 <= 60, f"{node.name} has {node.end_lineno - node.lineno + 1} lines"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_private_name_is_imported_from_another_package(path):
    package = _name(path).rpartition(".")[0] if path.name != "__init__.py" else _name(path)
    for module, names in _imports(path):
        if module.startswith("pyro_lfi") and module.rpartition(".")[0] != package and module != package:
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{_name(path)} imports {private} from {module}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_lower_layers_do_not_import_higher_ones(path):
    parts = _name(path).split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return
    higher = LAYERS[LAYERS.index(parts[1]) + 1 :]
    for module, _ in _imports(path):
        assert not any(module.startswith(f"pyro_lfi.{layer}") for layer in higher), f"{_name(path)} imports {module}"


def test_the_installed_version_is_the_package_version_and_types_ship():
    from importlib.metadata import version

    assert version("pyro-lfi") == pyro_lfi.__version__
    assert (PACKAGE / "py.typed").is_file()
