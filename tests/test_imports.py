"""The import direction of estibench's packages, read from the source with :mod:`ast` (issue 27): no import cycle
among the project's modules, and no module importing a layer above its own.

Layers, lowest first (a module may import its own layer and those below it):

====  ==========  =====================================================================================
0     core        ``estibench.files``, ``estibench.argparse_oneline`` (``estibench/``)
1     data        ``estibench.data.*`` (``data/``; ``data/cli.py``, fetch-data's parser, needs only core and data)
2     models      ``estibench.models.*`` (``models/``)
3     estimators  ``estibench.estimators.*`` (``estimators/``)
4     engine      ``estibench.harness.*`` but the modules placed below (``harness/``: runner, sweep, store, gradients,
                  exact, metrics, measurement, basket, checks, pretrain, definitions, the option grammar)
5     study base  ``estibench.studies.base`` (``studies/base.py``: ``Study``, ``Published``, ``Headline``)
6     report kit  the modules of ``reports/`` a study's page builds on (``section``, ``render``, ``tables``,
                  ``naming``, ``summary``, ``generic``, ``plotstyle``, ``basket``, ``leaderboard``, ``definitions``,
                  ``export``): they read no study registry
7     study       each study's folder ``estibench.studies.<name>`` and below (its ``Study``, task and page), and the
                  study registry ``estibench.studies`` (``studies/__init__.py``) that names them; a study imports the
                  base and the kit, never the registry
8     site        ``estibench.reports`` itself and the rest of ``reports/`` (``site``, ``index``, ``glossary``,
                  ``estimator_doc``): the site builder, which reads the study registry
9     cli         ``estibench.cli.*`` (``cli/``: the command line, one module per command), ``estibench`` itself
                  (its ``main``), ``estibench.__main__``, ``run_all``
10    outside     ``estibench.examples`` and ``estibench.examples.*`` (``examples/``), ``benchmarks.*``: plug-ins and
                  scripts that use the project (they may import anything); nothing in it imports them
====  ==========  =====================================================================================

:data:`LAYERS` holds these rules (first match wins).  A file's module name comes from ``pyproject.toml``
(``[tool.setuptools.package-dir]``: ``estibench.X`` → its folder), plus ``run_all.py`` and ``benchmarks/`` at the
top of the checkout.

What is an import (an edge of the graph), wherever it stands (module level, inside a function, a class, a ``try``):

* ``import a.b`` and ``from a import b``, relative ones resolved against the file's package; ``from P import n`` is an
  edge to ``P.n`` when that is a module, else to ``P``.  The parent packages Python also runs are not edges (else
  every submodule would be in a cycle with its package's ``__init__``).  The folders' bare names (``from
  harness.runner import …``, as a benchmark does for old checkouts) name the same modules;
* ``importlib.import_module(S)`` and ``__import__(S)`` with ``S`` a literal or ``f"{__name__}.name"``;
* an import-path string: a string constant ``"package.module:Attribute"`` naming a project module by its full name
  (``estibench.…``; not a folder's bare name: ``"data:…"`` is no import), as the registries
  import them when used (``Study.task`` and ``page``, ``Headline.published``, plug-ins on the command line).  These
  hide an import in data, so they count as one.

Violations that need a part of issue 27 not done yet are listed, each with its reason: :data:`KNOWN_UPWARD` (upward
edges) and :data:`KNOWN_CYCLE_EDGES` (imports inside one layer that close a cycle).  The cycle test removes the
listed edges and finds no cycle left.  The tests fail on any violation not listed *and* on a listed one that no longer
occurs (or no longer closes a cycle), so the lists only shrink.  ``python tests/test_imports.py`` prints the layers,
the upward edges and the cycles.
"""
from __future__ import annotations

import ast
import os
import re
import sys
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (layer number, name, module patterns): a pattern ``a.b`` matches ``a.b`` itself, ``a.b.*`` every module below it
LAYERS: Tuple[Tuple[int, str, Tuple[str, ...]], ...] = (
    (9, "cli", ("estibench.cli", "estibench.cli.*", "estibench.__main__", "run_all")),
    (5, "study base", ("estibench.studies.base",)),
    (7, "study", ("estibench.studies", "estibench.studies.*")),
    (6, "report kit", tuple(f"estibench.reports.{m}" for m in ("section", "render", "tables", "naming", "summary",
                                                                "generic", "plotstyle", "basket", "leaderboard",
                                                                "definitions", "export"))),
    (0, "core", ("estibench.files", "estibench.argparse_oneline")),
    (1, "data", ("estibench.data", "estibench.data.*")),
    (2, "models", ("estibench.models", "estibench.models.*")),
    (3, "estimators", ("estibench.estimators", "estibench.estimators.*")),
    (4, "engine", ("estibench.harness", "estibench.harness.*")),
    (8, "site", ("estibench.reports", "estibench.reports.*")),
    (4, "engine", ("estibench.testing",)),
    (9, "cli", ("estibench",)),
    (10, "outside", ("estibench.examples", "estibench.examples.*", "benchmarks", "benchmarks.*")),
)
LAYER_NAMES = {number: name for number, name, _ in LAYERS}

#: upward imports that stay until a later part of issue 27: (importer, imported) → why, and what removes it
KNOWN_UPWARD: Dict[Tuple[str, str], str] = {
}

#: imports inside one layer that close a cycle, kept until a later part (or outside) of issue 27: (importer,
#: imported) → why.  The cycle test removes these and the :data:`KNOWN_UPWARD` edges from the graph and finds no cycle
#: left; each entry here must still lie on a cycle of the whole graph (else it leaves the list).
KNOWN_CYCLE_EDGES: Dict[Tuple[str, str], str] = {
    ("estibench.data.multimnist", "estibench.data.datasets"):
        "not named by issue 27: datasets.load builds a multi-mnist-* name through multimnist.build, which loads the "
        "MNIST it draws digits from through datasets.load (two lazy imports inside data/)",
}


# -- reading the imports -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    where: str  # path:line
    how: str  # "import", "import in a function", "import_module", "import-path string"


def package_dirs(root: str = ROOT) -> Dict[str, str]:
    """``estibench.X`` → folder, from ``pyproject.toml``'s ``[tool.setuptools.package-dir]``."""
    with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as fh:
        text = fh.read()
    try:
        import tomllib
        table = tomllib.loads(text)["tool"]["setuptools"]["package-dir"]
    except ImportError:  # Python 3.10: the same table, read by hand
        section = text.split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
        table = dict(re.findall(r'^\s*"([^"]+)"\s*=\s*"([^"]+)"', section, re.M))
    return {package: os.path.normpath(folder) for package, folder in table.items()}


def module_files(root: str = ROOT) -> Dict[str, str]:
    """Module name → file, for every ``.py`` under the project's packages (``examples/`` is one), ``benchmarks/`` and
    ``run_all.py``."""
    tops = dict(package_dirs(root))
    if os.path.isdir(os.path.join(root, "benchmarks")):
        tops["benchmarks"] = "benchmarks"
    out: Dict[str, str] = {}
    for package, folder in tops.items():
        base = os.path.join(root, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            rel = os.path.relpath(dirpath, base)
            prefix = package if rel == "." else f"{package}.{rel.replace(os.sep, '.')}"
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                module = prefix if name == "__init__.py" else f"{prefix}.{name[:-3]}"
                out.setdefault(module, os.path.join(dirpath, name))
    if os.path.isfile(os.path.join(root, "run_all.py")):
        out["run_all"] = os.path.join(root, "run_all.py")
    return out


_PATH_STRING = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):[A-Za-z_][A-Za-z0-9_.]*$")


class _Reader(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, path: str, known: Set[str], aliases: Dict[str, str]):
        self.module, self.path, self.known, self.aliases = module, path, known, aliases
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0  # functions around the node
        self.edges: List[Edge] = []

    # names → project modules
    def resolve(self, name: str, bare: bool = True) -> Optional[str]:
        """The project module ``name`` is, or is inside (the longest known prefix), or None; ``bare``: a folder's bare
        name (``harness.runner``) counts too."""
        head, _, tail = name.partition(".")
        if bare and head in self.aliases:  # a folder's bare name
            name = self.aliases[head] + (f".{tail}" if tail else "")
        while name:
            if name in self.known:
                return name
            name = name.rpartition(".")[0]
        return None

    def add(self, node: ast.AST, target: Optional[str], how: str) -> None:
        if target is None or target == self.module:
            return
        if how == "import" and self.depth:
            how = "import in a function"
        self.edges.append(Edge(self.module, target, f"{self.path}:{node.lineno}", how))

    def relative(self, level: int, module: Optional[str]) -> str:
        parts = self.package.split(".") if self.package else []
        base = parts[:len(parts) - (level - 1)] if level > 1 else parts
        return ".".join(base + ([module] if module else []))

    # visitors
    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            self.add(node, self.resolve(alias.name), "import")

    def visit_ImportFrom(self, node: ast.ImportFrom):
        source = self.relative(node.level, node.module) if node.level else (node.module or "")
        for alias in node.names:
            full = f"{source}.{alias.name}"
            target = self.resolve(full) if alias.name != "*" else None
            if target != full:  # not a submodule: the names come from the module itself
                target = self.resolve(source)
            self.add(node, target, "import")

    def visit_Call(self, node: ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            text = self.literal_module(node.args[0])
            if text is not None:
                if text.startswith("."):  # import_module(".x", package=__name__)
                    level = len(text) - len(text.lstrip("."))
                    text = self.relative(level, text.lstrip(".") or None)
                self.add(node, self.resolve(text), "import_module")
        self.generic_visit(node)

    def literal_module(self, arg: ast.AST) -> Optional[str]:
        """The text of a literal, or of ``f"{__name__}.name"``; None for anything computed."""
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        if isinstance(arg, ast.JoinedStr):
            out = []
            for piece in arg.values:
                if isinstance(piece, ast.Constant):
                    out.append(str(piece.value))
                elif isinstance(piece, ast.FormattedValue) and isinstance(piece.value, ast.Name) \
                        and piece.value.id == "__name__" and piece.format_spec is None:
                    out.append(self.module)
                else:
                    return None
            return "".join(out)
        return None

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, str):
            m = _PATH_STRING.match(node.value.strip())
            if m:
                self.add(node, self.resolve(m.group(1), bare=False), "import-path string")


def read_imports(root: str = ROOT) -> Tuple[Dict[str, str], List[Edge]]:
    """(module → file, every edge between two of them)."""
    files = module_files(root)
    known = set(files)
    aliases = {folder.replace(os.sep, "."): package for package, folder in package_dirs(root).items()
               if package.startswith("estibench.") and os.sep not in folder}
    edges: List[Edge] = []
    for module, path in files.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
        reader = _Reader(module, path.endswith("__init__.py"), os.path.relpath(path, root), known, aliases)
        reader.visit(tree)
        edges += reader.edges
    return files, edges


def layer(module: str) -> Optional[int]:
    for number, _, patterns in LAYERS:
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return number
    return None


def strongly_connected(nodes: Iterable[str], edges: Iterable[Tuple[str, str]]) -> List[FrozenSet[str]]:
    """Tarjan's strongly connected components with more than one node (an import cycle each)."""
    graph: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[FrozenSet[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(set(graph[v])):
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
            if len(component) > 1:
                out.append(frozenset(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def upward_edges(edges: Iterable[Edge]) -> Dict[Tuple[str, str], List[Edge]]:
    out: Dict[Tuple[str, str], List[Edge]] = {}
    for e in edges:
        low, high = layer(e.importer), layer(e.imported)
        if low is not None and high is not None and high > low:
            out.setdefault((e.importer, e.imported), []).append(e)
    return out


def _describe(pair: Tuple[str, str], edges: List[Edge]) -> str:
    a, b = pair
    where = ", ".join(f"{e.where} ({e.how})" for e in edges)
    return f"{a} [{LAYER_NAMES[layer(a)]}] -> {b} [{LAYER_NAMES[layer(b)]}]: {where}"


def _cycle_text(component: FrozenSet[str], edges: List[Edge]) -> str:
    inside = sorted({(e.importer, e.imported, e.where, e.how) for e in edges
                     if e.importer in component and e.imported in component})
    lines = [f"  {a} -> {b}  ({where}, {how})" for a, b, where, how in inside]
    return "{" + ", ".join(sorted(component)) + "}\n" + "\n".join(lines)


@pytest.fixture(scope="module")
def graph():
    return read_imports()


# -- the tests -----------------------------------------------------------------------------------------------------

def test_every_module_has_a_layer(graph):
    files, _ = graph
    assert len(files) > 100, "the project's modules were not found: check package_dirs()"
    missing = sorted(m for m in files if layer(m) is None)
    assert not missing, f"modules in no layer (add them to LAYERS in {__file__}): {missing}"


def test_no_upward_import(graph):
    """No module imports a layer above its own, but for the listed ones; a listed one that is gone must leave the
    list."""
    _, edges = graph
    found = upward_edges(edges)
    new = [_describe(pair, found[pair]) for pair in sorted(found) if pair not in KNOWN_UPWARD]
    gone = [f"{a} -> {b}" for a, b in sorted(KNOWN_UPWARD) if (a, b) not in found]
    assert not new and not gone, (
        ("upward imports (a lower layer importing a higher one; see the layers in tests/test_imports.py):\n  "
         + "\n  ".join(new) + "\n" if new else "")
        + ("KNOWN_UPWARD entries that no longer occur (remove them from tests/test_imports.py):\n  "
           + "\n  ".join(gone) if gone else ""))


def test_no_import_cycle(graph):
    """No import cycle among the project's modules (imports inside functions and import-path strings count) once the
    listed edges are removed; a listed edge that no longer lies on a cycle must leave the list."""
    files, edges = graph
    pairs = {(e.importer, e.imported) for e in edges}
    left = strongly_connected(files, pairs - set(KNOWN_UPWARD) - set(KNOWN_CYCLE_EDGES))
    whole = {m: c for c in strongly_connected(files, pairs) for m in c}
    gone = [f"{a} -> {b}" for a, b in sorted(KNOWN_CYCLE_EDGES) if (a, b) not in pairs or b not in whole.get(a, ())]
    assert not left and not gone, (
        ("import cycles (each line an import inside the cycle; break one, or, for a later part of issue 27, list it "
         "in KNOWN_CYCLE_EDGES with the reason):\n" + "\n".join(_cycle_text(c, edges) for c in sorted(left, key=sorted))
         + "\n" if left else "")
        + ("KNOWN_CYCLE_EDGES entries that no longer close a cycle (remove them from tests/test_imports.py):\n  "
           + "\n  ".join(gone) if gone else ""))


def test_the_reader_sees_every_kind_of_import(tmp_path):
    """The reader on a small made-up project: a relative import inside a function, ``import_module`` with a literal
    and with ``f"{__name__}.x"``, an import-path string, a bare folder name; and the checks fail on them."""
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools.package-dir]\n"estibench" = "estibench"\n'
                                             '"estibench.models" = "models"\n"estibench.harness" = "harness"\n')
    for folder in ("estibench", "models", "harness"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "estibench" / "files.py").write_text("")
    (tmp_path / "models" / "base.py").write_text(
        "import importlib\n"
        "def late():\n"
        "    from ..harness import runner\n"                      # relative, inside a function
        "    importlib.import_module('estibench.harness.sweep')\n"
        "TASK = 'estibench.harness.store:Store'\n")                 # an import-path string
    (tmp_path / "models" / "__init__.py").write_text(
        "import importlib\n"
        "def __getattr__(name):\n"
        "    return importlib.import_module(f'{__name__}.base')\n")
    for name in ("runner", "sweep", "store"):
        (tmp_path / "harness" / f"{name}.py").write_text("")
    (tmp_path / "harness" / "runner.py").write_text("from models.base import TASK\n")  # a bare folder name
    _, edges = read_imports(str(tmp_path))
    seen = {(e.importer, e.imported, e.how) for e in edges}
    assert seen == {
        ("estibench.models.base", "estibench.harness.runner", "import in a function"),
        ("estibench.models.base", "estibench.harness.sweep", "import_module"),
        ("estibench.models.base", "estibench.harness.store", "import-path string"),
        ("estibench.models", "estibench.models.base", "import_module"),
        ("estibench.harness.runner", "estibench.models.base", "import"),
    }, seen
    assert set(upward_edges(edges)) == {("estibench.models.base", "estibench.harness.runner"),
                                        ("estibench.models.base", "estibench.harness.sweep"),
                                        ("estibench.models.base", "estibench.harness.store")}
    assert strongly_connected({e.importer for e in edges}, [(e.importer, e.imported) for e in edges]) == [
        frozenset({"estibench.models.base", "estibench.harness.runner"})]


if __name__ == "__main__":  # a listing: the layers, the upward imports, the cycles
    modules, all_edges = read_imports()
    for number, name, _ in sorted(set((n, x, ()) for n, x, _ in LAYERS)):
        members = sorted(m for m in modules if layer(m) == number)
        print(f"{number} {name}: {len(members)} modules")
    print("\nupward imports:")
    ups = upward_edges(all_edges)
    for pair in sorted(ups):
        print(("  (known) " if pair in KNOWN_UPWARD else "  ") + _describe(pair, ups[pair]))
    print("\ncycles (known: the listed edges break them):")
    all_pairs = {(e.importer, e.imported) for e in all_edges}
    unbroken = set().union(*strongly_connected(modules, all_pairs - set(KNOWN_UPWARD) - set(KNOWN_CYCLE_EDGES)))
    for component in sorted(strongly_connected(modules, all_pairs), key=sorted):
        print(("" if component & unbroken else "(known) ") + _cycle_text(component, all_edges))
