"""The layout keeps its promises: imports flow one way between the stage packages, no cycle (imports
inside functions included), every exception lives in zoo/errors.py, every environment read in
zoo/config.py, and ``zoo list`` never loads torch, timm or huggingface_hub.

Read from the source with ``ast`` (nothing of zoo is imported), so a violation in a code path no test
runs still fails here. ALLOWED below is the table of docs/layout.md.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parent.parent / "zoo"

TOP = ("zoo.errors", "zoo.config", "zoo.home")
BASE = {*TOP, "zoo.util"}
#: package (or top module) -> the zoo packages and top modules it may import (besides its own modules)
ALLOWED: dict[str, set[str]] = {
    "zoo.errors": set(),
    "zoo.config": set(),
    "zoo.home": {"zoo.config"},
    "zoo.util": {"zoo.errors", "zoo.config"},
    "zoo.cards": BASE,
    "zoo.store": BASE | {"zoo.cards"},
    "zoo.weights": BASE | {"zoo.cards", "zoo.store"},
    "zoo.model": BASE | {"zoo.cards", "zoo.store", "zoo.weights"},
    "zoo.transfer": BASE | {"zoo.cards", "zoo.store", "zoo.weights", "zoo.model"},
    "zoo.compare": BASE | {"zoo.cards", "zoo.store", "zoo.weights", "zoo.model", "zoo.transfer"},
    "zoo.hub": BASE | {"zoo.cards", "zoo.store", "zoo.weights", "zoo.compare"},
    "zoo.api": BASE | {"zoo.cards", "zoo.weights", "zoo.model", "zoo.transfer"},
    "zoo.cli": BASE | {"zoo.cards", "zoo.store", "zoo.weights", "zoo.model", "zoo.transfer", "zoo.compare",
                       "zoo.hub", "zoo.api"},
    "zoo.__main__": {"zoo.cli"},
}
#: modules whose imports inside functions are the rule, not the exception: each command imports
#: its library code when it runs, so that ``zoo list`` parses its arguments without loading the rest
LAZY_BY_DESIGN = ("zoo.cli",)
#: what the shortest command may never load
HEAVY = ("torch", "timm", "huggingface_hub")
MAX_TOP_MODULES = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ZOO.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(ZOO.rglob("*.py"))}


MODULES = modules()


def owner(module: str) -> str:
    """The package (or top module) a module belongs to: ``zoo.weights.cache`` -> ``zoo.weights``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


class Import:
    """One import of a zoo module; ``text`` is its line, or for an import in a block of imports
    (consecutive import lines), the block's lines: a comment on the block's first line covers it."""

    def __init__(self, source: str, target: str, names: tuple[str, ...], line: int, in_function: bool, text: str):
        self.source, self.target, self.names, self.line, self.in_function, self.text = (
            source, target, names, line, in_function, text)

    def __repr__(self) -> str:
        return f"{MODULES[self.source][0].relative_to(ZOO.parent)}:{self.line}: {self.text.strip().splitlines()[-1]}"


def _absolute(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _block(lines: list[str], i: int) -> str:
    """The import at line ``i`` with the import lines right above it."""
    start = i
    while start > 0 and lines[start - 1].strip().startswith(("import ", "from ")):
        start -= 1
    return "\n".join(lines[start:i + 1])


def imports() -> list[Import]:
    """Every import of a zoo module by a zoo module, at module level or inside a function."""
    out = []
    for name, (path, tree) in MODULES.items():
        lines = path.read_text().splitlines()
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        nested = {id(c) for f in functions for c in ast.walk(f) if c is not f}
        for node in ast.walk(tree):
            text = _block(lines, node.lineno - 1) if hasattr(node, "lineno") else ""
            if isinstance(node, ast.Import):
                targets = [(a.name, ()) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, path.name == "__init__.py", node)
                targets = []
                for a in node.names:  # a submodule imported by name is an edge to that submodule
                    full = f"{base}.{a.name}"
                    targets.append((full, ()) if full in MODULES else (base, (a.name,)))
            else:
                continue
            for target, names in targets:
                if target == "zoo" or target.startswith("zoo."):
                    out.append(Import(name, target, names, node.lineno, id(node) in nested, text))
    return out


IMPORTS = imports()


def third_party_at_module_level(module: str) -> set[str]:
    tree = MODULES[module][1]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_top_of_zoo_holds_at_most_eight_modules():
    top = sorted(p.name for p in ZOO.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_every_package_says_its_job_and_what_it_may_import():
    for init in sorted(ZOO.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc or "may import" in doc, f"{init}: the docstring names no allowed imports"


def test_imports_follow_the_stage_order():
    wrong = []
    for imp in IMPORTS:
        src, dst = owner(imp.source), owner(imp.target)
        if src == dst or src == "zoo":  # inside one package; zoo/__init__ is the lazy public face
            continue
        if dst == "zoo" and set(imp.names) <= {"__version__"}:
            continue  # the version string, defined where the build reads it
        if dst not in ALLOWED.get(src, set()):
            wrong.append(imp)
    assert not wrong, "imports against the stage order:\n" + "\n".join(map(repr, wrong))


def test_no_import_cycle_counting_imports_inside_functions():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES:
            graph[imp.source].add(imp.target)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_of_zoo_inside_functions_say_why():
    """Outside the CLI, a zoo import inside a function is there to keep a light path light, and its
    line says so; one that only dodges a cycle would fail the cycle test above once hoisted."""
    silent = [imp for imp in IMPORTS if imp.in_function and not imp.source.startswith(LAZY_BY_DESIGN)
              and "#" not in imp.text]
    assert not silent, "imports inside functions without a reason:\n" + "\n".join(map(repr, silent))


def _closure(start: set[str]) -> set[str]:
    """Modules reached from ``start`` by module-level imports (what importing them runs)."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen or m not in MODULES:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a submodule runs its packages first
        todo += [imp.target for imp in IMPORTS if imp.source == m and not imp.in_function]
    return seen


def test_zoo_list_reads_cards_only():
    """What ``zoo list`` (and ``--measured``) imports, statically: the entry point with every module-level
    import, plus the imports of the list command itself; none may import torch, timm or huggingface_hub."""
    tree = MODULES["zoo.cli.cards"][1]
    cmd = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cmd_list")
    called = {imp.target for imp in IMPORTS if imp.source == "zoo.cli.cards" and cmd.lineno <= imp.line <= cmd.end_lineno}
    reached = _closure({"zoo.__main__", "zoo.cli", *called})
    assert "zoo.cards.registry" in reached
    heavy = {m: sorted(third_party_at_module_level(m) & set(HEAVY)) for m in reached}
    assert not {m: h for m, h in heavy.items() if h}, heavy


def test_the_server_holds_no_torch():
    """``zoo serve`` (every module of zoo.hub and what they import at module level) reaches neither
    torch nor timm: the hub may read compare's stored measurements, never run a model."""
    reached = _closure({m for m in MODULES if owner(m) == "zoo.hub"})
    assert "zoo.compare.measurements" in reached
    heavy = {m: sorted(third_party_at_module_level(m) & {"torch", "timm"}) for m in reached}
    assert not {m: h for m, h in heavy.items() if h}, heavy


@pytest.mark.parametrize("argv", [["list"], ["list", "--measured"], ["info", "resnet50"]])
def test_zoo_list_loads_no_ml_library_when_it_runs(argv):
    code = ("import sys; from zoo.cli import main; rc = main(sys.argv[1:]); "
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; print(heavy); raise SystemExit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_exception_class_lives_in_errors():
    outside = []
    for name, (path, tree) in MODULES.items():
        if name == "zoo.errors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Failed")) or b in ("Exception", "BaseException") for b in bases):
                    outside.append(f"{path}:{node.lineno}: class {node.name}")
    assert not outside, outside


def test_every_environment_read_is_in_config():
    reads = []
    for name, (path, tree) in MODULES.items():
        if name == "zoo.config":
            continue
        for node in ast.walk(tree):
            # os.environ[...] / os.environ.get / "X" in os.environ / os.getenv: any use of os.environ reads it,
            # except building a child's environment from it ({**os.environ, ...}), which only passes it on
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                reads.append(f"{path}:{node.lineno}")
    assert not reads, "environment read outside zoo/config.py: " + ", ".join(reads)
