"""The dependency rule of src/wasitls/__init__.py (IMPORT_RULE), checked on every import of every
module (top-level or inside a function), parsed with ast: a wrong arrow fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "wasitls"


def import_rule() -> dict[str, list[str]]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMPORT_RULE" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("src/wasitls/__init__.py defines no IMPORT_RULE")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every wasitls import in the file."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` names a module x when the base is a package
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            else:
                names = [node.module or ""]
            found.extend((node.lineno, n) for n in names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return [(line, n) for line, n in found if n == "wasitls" or n.startswith("wasitls.")]


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def allowed(rule: dict[str, list[str]], source: str, target: str) -> bool:
    here, there = layer_of(source), layer_of(target)
    if here == there:
        return True
    for entry in rule[here]:
        if entry == "*":
            return True
        head, _, sub = entry.partition(".")
        if head == there and (not sub or target.split(".")[2:3] == [sub]):
            return True
    return False


def test_every_module_belongs_to_a_layer_of_the_rule():
    rule = import_rule()
    unknown = sorted({layer_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - set(rule))
    assert unknown == [], f"add these to IMPORT_RULE in src/wasitls/__init__.py: {unknown}"


def test_every_import_follows_the_rule():
    rule = import_rule()
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for line, target in imports_of(path):
            if not allowed(rule, source, target):
                broken.append(f"{path.relative_to(SRC)}:{line}: {layer_of(source)} imports {target}")
    assert broken == [], "imports against IMPORT_RULE:\n" + "\n".join(broken)


def test_the_checker_sees_a_broken_arrow():
    """The checker itself: a TLS core module importing wasi is caught, a glue import of wasi.io is not."""
    rule = import_rule()
    assert not allowed(rule, "wasitls.tls.engine", "wasitls.wasi.io.streams")
    assert not allowed(rule, "wasitls.wasi.ctx", "wasitls.tls_streams")
    assert not allowed(rule, "wasitls.component.runtime", "wasitls.wasi.io.poll")
    assert not allowed(rule, "wasitls.tls_streams", "wasitls.wasi.ctx")
    assert allowed(rule, "wasitls.tls_streams", "wasitls.wasi.io.streams")
    assert allowed(rule, "wasitls.tls_interfaces.wasitls_tls", "wasitls.wasi.io.poll")
    targets = {t for _, t in imports_of(PACKAGE / "tls_streams.py")}
    assert "wasitls.wasi.io.streams" in targets and "wasitls.tls" in targets  # relative imports resolved


def test_benchmarks_do_not_import_the_tests():
    """bench/ shares helpers with the tests through wasitls.devtools, never by putting tests/ on sys.path."""
    tests_modules = {p.stem for p in (SRC.parent / "tests").glob("*.py")} | {"p1", "reliability"}
    offenders = []
    for path in sorted((SRC.parent / "bench").rglob("*.py")):
        text = path.read_text()
        if '"tests"' in text or "'tests'" in text:
            offenders.append(f"{path.name}: puts tests/ on sys.path")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in tests_modules]
    assert offenders == []
