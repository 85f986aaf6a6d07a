"""The package layout: the dependency rule, no import circles, and a light command line.

The rule (issue 17, item 1): core (units, cosmology, catalog, survey, cosmic variance,
compression, ``smf/``, ``flow/``, ``census/``, ...) <- ``io/`` <- ``plots/`` <- ``cli/``. A
module may import from its own layer and the layers before it, never from a later one.

Two independent checks of the rule:

- *static*: every ``import`` statement in the source (``ast``), at module level **and inside
  functions** (a lazy import is a dependency all the same), including those under
  ``if TYPE_CHECKING:``;
- *dynamic*: importing each module in a fresh interpreter puts no module of a later layer into
  ``sys.modules`` (this catches ``importlib.import_module`` and imports made by the modules a
  module imports).

The walk for circles uses the same import statements, less those under ``TYPE_CHECKING``
(they never run). Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those
implicit edges are not counted (a package's ``__init__`` importing its own sub-modules is not a
circle). The top-level ``popmodel/__init__.py`` is the public door: it may re-export names of
any layer, lazily (module ``__getattr__``), so its own (lazy) imports are left out of both
checks; in exchange no module of the package imports anything from it but ``__version__``, and
``import popmodel`` itself loads no io, plots or cli module (nor jax, torch or matplotlib).
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "popmodel"
#: the layers, in order: a module may import only from its own layer and earlier ones
LAYERS = ("core", "io", "plots", "cli")
HEAVY = ("jax", "torch", "numpyro", "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of the package (name -> file), ``__main__`` modules left out."""
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))
            if p.name != "__main__.py" and "__pycache__" not in p.parts}


MODULES = _modules()


def layer(module: str) -> str | None:
    """``core``, ``io``, ``plots`` or ``cli`` for a module of the package; None for the
    top-level ``popmodel`` (the public door) and for anything outside the package."""
    parts = module.split(".")
    if parts[0] != "popmodel" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in LAYERS[1:] else "core"


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of the statements inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    for sub in ast.walk(stmt):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Import(NamedTuple):
    """One import of a package module: where it is and what it names."""

    target: str  # the package module imported
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``
    name: str  # the name imported (``from X import name``), or the module
    scope: str  # the enclosing ``Class.function`` ("" at module level)
    base: str  # the module named after ``from`` (or the imported module)


@functools.cache
def imports_of(module: str) -> tuple[Import, ...]:
    """The package modules that ``module`` imports, at module level and inside functions.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module of the package,
    else as importing ``a.b``; ``import a.b.c`` as importing ``a.b.c``.
    """
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    tc = _type_checking_lines(tree)
    out: list[Import] = []

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, (*scope, child.name))
                continue
            where = ".".join(scope)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "popmodel":
                        out.append(Import(alias.name, child.lineno, child.lineno in tc, alias.name,
                                          where, alias.name))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, path, child)
                if base.split(".")[0] == "popmodel":
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        out.append(Import(sub if sub in MODULES else base, child.lineno,
                                          child.lineno in tc, alias.name, where, base))
            visit(child, scope)

    visit(tree, ())
    return tuple(out)


def _is_load(imp: Import) -> bool:
    return not imp.type_only and imp.scope.count(".") == 1 and imp.scope.endswith(".load")


def _sanctioned(module: str, imp: Import) -> bool:
    """The one import against the layer order that the rule allows: a core result type's
    ``load`` classmethod delegating to the io module that reads it (issue 17 item 2 asks for
    ``SMFFit.load``, ``SFSFit.load``, ``CensusResult.load``), and the ``TYPE_CHECKING`` import
    of what it returns. It runs only when called, so it is left out of the walk for circles
    too; nothing else in a core module may reach io.

    Likewise ``PosteriorCatalog.read`` delegates to :mod:`popmodel.readers` (issue 14 asks for
    one reader of every posterior layout behind it), which builds catalogues; the import runs
    only when called."""
    if (module == "popmodel.catalog" and imp.target == "popmodel.readers" and not imp.type_only
            and imp.scope.endswith(".read")):
        return True
    if layer(module) != "core" or layer(imp.target) != "io":
        return False
    if imp.type_only:
        return any(_is_load(o) and o.target == imp.target for o in imports_of(module))
    return _is_load(imp)


# --------------------------------------------------------------------------------------------
# the dependency rule, read from the source


def test_every_module_belongs_to_a_layer():
    for name in ("popmodel.io", "popmodel.plots", "popmodel.cli"):
        assert name in MODULES, f"{name} is missing"
    counts = {k: sum(layer(m) == k for m in MODULES) for k in LAYERS}
    assert all(counts.values()), counts


def test_no_import_against_the_layer_order_in_the_source():
    """Static: no module (module-level, function-level or TYPE_CHECKING import) imports from a
    later layer."""
    bad = []
    for module in MODULES:
        own = layer(module)
        if own is None:
            continue  # the public door (see the module doc)
        seen = set()
        for imp in imports_of(module):
            dep = layer(imp.target)
            if (dep is None or LAYERS.index(dep) <= LAYERS.index(own) or _sanctioned(module, imp)
                    or (imp.line, imp.target) in seen):
                continue
            seen.add((imp.line, imp.target))
            bad.append(f"{MODULES[module].relative_to(ROOT)}:{imp.line}: {own} module {module} "
                       f"imports {dep} module {imp.target}"
                       + (f" (in {imp.scope})" if imp.scope else ""))
    assert not bad, "imports against core <- io <- plots <- cli:\n" + "\n".join(bad)


def test_nothing_in_the_package_imports_from_the_public_door_but_the_version():
    """``popmodel/__init__.py`` re-exports every layer, so importing from it would hide a
    dependency; modules import what they need from where it lives."""
    bad = [f"{MODULES[m].relative_to(ROOT)}:{imp.line}: from popmodel import {imp.name}"
           for m in MODULES if m != "popmodel"
           for imp in imports_of(m)
           if imp.target == "popmodel" and imp.name != "__version__"]
    assert not bad, "\n".join(bad)


def test_every_imported_module_exists():
    """Each ``popmodel`` import names a module that exists (a move leaves no stale import
    behind, such as one of ``popmodel.flow.cli`` after it became ``popmodel.cli.sfs``): the
    module itself, or for ``from PACKAGE import NAME`` a sub-module or a name the package's
    ``__init__`` mentions."""
    bad = []
    for m in MODULES:
        for imp in imports_of(m):
            if imp.base not in MODULES:
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{imp.line}: no module {imp.base}")
            elif (imp.target == imp.base and imp.name != imp.base
                  and MODULES[imp.base].name == "__init__.py"
                  and imp.name not in MODULES[imp.base].read_text()):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{imp.line}: {imp.base} has no "
                           f"{imp.name}")
    assert not bad, "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports when it runs (TYPE_CHECKING left out)."""
    g: dict[str, set[str]] = {}
    for module in MODULES:
        if module == "popmodel":
            g[module] = set()  # the lazy public door (see the module doc)
            continue
        g[module] = {imp.target for imp in imports_of(module)
                     if not imp.type_only and imp.target in MODULES and imp.target != module
                     and not _sanctioned(module, imp)}
    return g


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one
    circle through it ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_circle_in(graph, set(c)) for c in comps]


def _circle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """One shortest circle through the first module of a strongly connected component."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle in {comp}")


def test_find_cycles_reports_a_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(g) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    """Walking every module's imports (module-level and inside functions) finds no circle."""
    cycles = find_cycles(_graph())
    lines = []
    for c in cycles:
        edges = []
        for a, b in itertools.pairwise(c):
            where = sorted({imp.line for imp in imports_of(a) if imp.target == b and not imp.type_only})
            edges.append(f"  {MODULES[a].relative_to(ROOT)}:{','.join(map(str, where))} imports {b}")
        lines.append(" -> ".join(c) + "\n" + "\n".join(edges))
    assert not cycles, "import circles:\n" + "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the dependency rule, at run time

_PROBE = r"""
import os, sys
LAYERS = ("core", "io", "plots", "cli")
def layer(m):
    p = m.split(".")
    return None if p[0] != "popmodel" or len(p) == 1 else (p[1] if p[1] in LAYERS[1:] else "core")
# third-party libraries first, in the parent, so that each child imports only popmodel
for lib in sys.argv[2].split(","):
    try:
        __import__(lib)
    except Exception:
        pass
def child(mod):
    try:
        __import__(mod)
        own = LAYERS.index(layer(mod))
        later = sorted(m for m in list(sys.modules)
                       if layer(m) is not None and LAYERS.index(layer(m)) > own)
        return f"{mod} loads {later}" if later else ""
    except BaseException as exc:
        return f"{mod} fails to import: {type(exc).__name__}: {exc}"
bad, running = [], []
todo = sys.argv[1].split(",")
width = max(1, min(4, os.cpu_count() or 1))
while todo or running:
    while todo and len(running) < width:
        mod = todo.pop(0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, child(mod).encode()[:60000])
            os._exit(0)
        os.close(w)
        running.append((pid, r))
    pid, r = running.pop(0)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    if chunks:
        bad.append(b"".join(chunks).decode())
print("\n".join(bad))
sys.exit(1 if bad else 0)
"""

#: imported before the fork (the children then import only popmodel's own modules)
_THIRD_PARTY = ("numpy", "scipy.special", "scipy.stats", "scipy.interpolate", "astropy.units",
                "astropy.table", "astropy.cosmology", "h5py", "jax", "jax.numpy", "numpyro",
                "numpyro.infer", "arviz", "torch", "zuko", "tqdm")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("which", LAYERS[:-1])
def test_importing_a_module_loads_no_module_of_a_later_layer(which):
    """Dynamic: each core (io, plots) module, imported alone, leaves no io/plots/cli (plots/cli,
    cli) module in ``sys.modules``."""
    mods = [m for m in MODULES if layer(m) == which]
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", _PROBE, ",".join(mods),
                        ",".join(_THIRD_PARTY)],
                       capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]


def test_import_popmodel_is_light():
    code = ("import sys, popmodel; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{HEAVY!r} or m.startswith(('popmodel.io', 'popmodel.plots', 'popmodel.cli'))); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------------------------
# a light command line: --help and --version import nothing heavy


_CLI = ("import sys, time; t0 = time.perf_counter(); from popmodel.cli import main\n"
        "try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        "dt = time.perf_counter() - t0\n"
        "loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})\n"
        "print('LOADED', loaded, 'RC', rc, 'SECONDS', dt)\n")


def _cli_probe(argv: list[str], heavy: tuple[str, ...]) -> tuple[list[str], float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CLI.format(argv=argv, heavy=set(heavy))],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    wall = time.perf_counter() - t0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("LOADED"))
    loaded = ast.literal_eval(line.split("LOADED", 1)[1].split("RC")[0].strip())
    return loaded, wall, r.stdout


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["fit-smf", "--help"],
                                  ["census", "--help"], ["figures", "--help"],
                                  ["fit-sfs", "--help"], ["run-3dhst", "--help"]])
def test_version_and_help_load_no_jax_torch_numpyro_or_matplotlib(argv):
    loaded, _, out = _cli_probe(argv, HEAVY)
    assert loaded == [], f"popmodel {' '.join(argv)} imported {loaded}"
    assert "RC 0" in out


def test_the_parser_imports_no_scientific_library():
    """Building the parser (``--help``, ``--version``) imports no numpy, scipy, astropy or h5py
    either: sub-commands import their work when they run (this keeps ``--help`` well under a
    second; 7-8 s when the parser imported everything)."""
    extra = ("numpy", "scipy", "astropy", "h5py", "arviz", "zuko", *HEAVY)
    for argv in (["--version"], ["--help"]):
        loaded, wall, _ = _cli_probe(argv, extra)
        assert loaded == [], f"popmodel {' '.join(argv)} imported {loaded}"
        assert wall < 30  # a loose bound for a loaded test machine; typically < 0.2 s
