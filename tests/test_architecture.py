"""The package's structure: private modules stay private to their package.

import-linter (run by ``.ci/run``) checks that layers only point down; this test
checks the other half of the rule: no module imports a private (``_name``)
module of another package, e.g. ``visualization`` reaching into
``metrics._common``.  The top-level private modules (``_engine``, ``_hooks``,
``_validation``, ``_uniform_output``) are the package's own machinery and may be
imported from anywhere inside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "captum_baselines"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> list[str]:
    """Absolute names of the package modules ``path`` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [t for t in found if t.startswith("captum_baselines.")]


def _private_package_and_module(target: str) -> tuple[str, str] | None:
    """``(owning package, module)`` if ``target`` is a private module below the
    top level (``captum_baselines.pkg._mod``)."""
    parts = target.split(".")
    for i in range(2, len(parts)):
        if parts[i].startswith("_") and not parts[i].startswith("__"):
            return ".".join(parts[:i]), ".".join(parts[: i + 1])
    return None


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_imports_another_packages_private_modules(path):
    importer = _module_name(path)
    for target in _imported(path):
        private = _private_package_and_module(target)
        if private is None:
            continue
        owner, module = private
        assert importer == owner or importer.startswith(owner + "."), (
            f"{importer} imports {module}, private to {owner}"
        )


def test_subpackages_have_no_private_modules():
    # _engine is the package's private machinery; the public subpackages keep
    # every module public so that siblings import only public names
    for sub in ("attr", "metrics", "study"):
        folder = PACKAGE / sub
        if folder.exists():
            private = [
                p.name
                for p in folder.glob("_*.py")
                if p.name not in ("__init__.py", "__main__.py")
            ]
            assert not private, f"{sub}/ has private modules {private}"
