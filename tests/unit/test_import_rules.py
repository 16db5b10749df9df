"""Dependencies point one way: every import of the product's own modules follows the table of layers below.

Each module of the six packages is read with `ast`, its imports at module level and inside functions alike
(a function-level import dodges a cycle at run time, not the rule). docs/design.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

PACKAGES = ("config", "messaging", "saga", "payments", "inventory", "orders")

# Which layers each layer may import, beside its own. `kernel` and `access` are the parts of config/ that sit
# below everything (config/kernel, config/access); `config` is the rest of config/, the wiring on top.
ALLOWED: dict[str, frozenset[str]] = {
    "kernel": frozenset(),
    "access": frozenset({"kernel"}),
    "messaging": frozenset({"kernel", "access"}),
    "saga": frozenset({"kernel", "access", "messaging"}),
    "payments": frozenset({"kernel", "access", "messaging", "saga"}),
    "inventory": frozenset({"kernel", "access", "messaging", "saga"}),
    "orders": frozenset({"kernel", "access", "messaging", "saga", "payments", "inventory"}),
    "config": frozenset({"kernel", "access", "messaging", "saga", "payments", "inventory", "orders"}),
}
# Sub-packages that are layers of their own.
SUBLAYERS = {("config", "kernel"): "kernel", ("config", "access"): "access"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or None when it is not one of the product's."""
    parts = tuple(module.split("."))
    if parts[0] not in PACKAGES:
        return None
    return SUBLAYERS.get(parts[:2], parts[0])


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """Every (line, module) imported anywhere in `tree`. `from a import b` imports `a.b` when that is a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if submodule in known else base))
    return found


def violations(root: Path, packages: tuple[str, ...] = PACKAGES, allowed: dict = ALLOWED) -> list[str]:
    """`file:line: importer -> imported (layer -> layer)` for every import that breaks `allowed`."""
    files = sorted(path for package in packages for path in (root / package).rglob("*.py"))
    known = {module_name(root, path) for path in files}
    broken = []
    for path in files:
        module = module_name(root, path)
        source = layer_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported(tree, module, path.name == "__init__.py", known):
            target_layer = layer_of(target)
            if target_layer is None or target_layer == source or target_layer in allowed[source]:
                continue
            broken.append(f"{path.relative_to(root)}:{line}: {module} -> {target} ({source} -> {target_layer})")
    return broken


def test_every_import_of_the_product_follows_the_layers():
    broken = violations(Path(settings.BASE_DIR))

    assert not broken, "imports against the layers (tests/unit/test_import_rules.py, docs/design.md):\n" + "\n".join(
        broken
    )


def test_every_package_and_sublayer_has_a_row_and_each_row_points_only_downwards():
    assert set(ALLOWED) == {*PACKAGES, *SUBLAYERS.values()}
    # No two layers may import each other, so that no cycle can pass the table.
    assert not [(a, b) for a, below in ALLOWED.items() for b in below if a in ALLOWED[b]]


def write(root: Path, path: str, text: str) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")


def test_the_checker_names_the_file_and_the_arrow_of_an_import_against_the_layers(tmp_path):
    for package in PACKAGES:
        write(tmp_path, f"{package}/__init__.py", "")
    write(tmp_path, "config/kernel/__init__.py", "")
    write(tmp_path, "config/kernel/sql.py", "def insert():\n    from messaging.outbox import publish\n")
    write(tmp_path, "messaging/outbox.py", "from config.kernel import sql\nfrom config.access.services import x\n")
    write(tmp_path, "config/access/__init__.py", "")
    write(tmp_path, "config/access/services.py", "from ..kernel import sql\n")
    write(tmp_path, "saga/services.py", "import django\n\n\ndef end():\n    from orders import services\n")
    write(tmp_path, "orders/services.py", "from saga.services import end\nfrom inventory import models\n")
    write(tmp_path, "payments/handlers.py", "from . import services\nfrom ..inventory import selectors\n")
    write(tmp_path, "config/urls.py", "from orders import services\n")

    assert violations(tmp_path) == [
        "config/kernel/sql.py:2: config.kernel.sql -> messaging.outbox (kernel -> messaging)",
        "payments/handlers.py:2: payments.handlers -> inventory (payments -> inventory)",
        "saga/services.py:5: saga.services -> orders.services (saga -> orders)",
    ]
