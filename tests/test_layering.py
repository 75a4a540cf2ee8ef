"""The package's layering: no import cycle, no import from a lower layer into a higher one.

Every import counts, wherever it is written: at module level, inside a function (the lazy imports that
keep cold starts short), under `if TYPE_CHECKING:`, and a module named by a string (`import_module`'s
argument). A lazy import still ties the two modules together; it only moves the cost.

The layers, lowest first. A module may import its own layer and the ones below it, never one above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "layers" / "pbxbridge"

# `name` is one module (a package's __init__ is the package's name); `name.*` is the package `name` and
# every module under it.
# The most specific entry wins: `pbxbridge.widget.settings` is a setting although `pbxbridge.widget.*`
# are the widget's handlers.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # What everything may use: the version, phone numbers.
    ("foundations", ("pbxbridge", "pbxbridge.phones")),
    # The formats at our edges, as data: the PBX's webhooks and answers, our commands, the widget's
    # token, the CRM's contacts files. No I/O, no decisions.
    (
        "protocol",
        (
            "pbxbridge.protocol.*",
            "pbxbridge.pbx.models",
            "pbxbridge.widget_tokens",
            "pbxbridge.contacts_files",
        ),
    ),
    # What a call, a push, a contact, a call-back, a lead mean; the stores and the PBX are Protocols
    # passed in. Never boto3 or HTTP (see IO_LIBRARIES).
    ("domain", ("pbxbridge.domain.*", "pbxbridge.call_events")),
    # Reaching the world: AWS (DynamoDB one module per aggregate, S3, SSM keys), the PBX's API, the
    # recording links, the commands function (the typed client other services use).
    (
        "access",
        (
            "pbxbridge.aws",
            "pbxbridge.keys",
            "pbxbridge.storage.*",
            "pbxbridge.pbx.*",
            "pbxbridge.recordings.*",
            "pbxbridge.client",
        ),
    ),
    # The functions' environment, read into models.
    (
        "settings",
        (
            "pbxbridge.common_settings",
            "pbxbridge.settings",
            "pbxbridge.function_settings",
            "pbxbridge.widget.settings",
        ),
    ),
    # One per function: wire the parts, run one request (the functions/ handlers call these).
    (
        "orchestrators",
        (
            "pbxbridge.webhook",
            "pbxbridge.commands",
            "pbxbridge.history_sync",
            "pbxbridge.recorder",
            "pbxbridge.stream",
            "pbxbridge.overdue",
        ),
    ),
    # On top of the orchestrators: the widget's functions (its API runs commands), the console, the
    # OpenAPI generator.
    ("handlers and tools", ("pbxbridge.widget.*", "pbxbridge.cli", "pbxbridge.openapi")),
)

# The layers below `access` never touch AWS or the network: tests and other functions can use them
# with nothing running.
IO_LIBRARIES = frozenset({"boto3", "botocore", "requests", "urllib3", "http", "socket", "ssl", "aws_lambda_powertools"})
IO_FREE_LAYERS = frozenset({"foundations", "protocol", "domain"})


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` (under `root`), by its dotted name."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _base(module: str, path: Path, level: int) -> str:
    """What `from .` (level 1), `from ..` (level 2) ... name in `module`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return package


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of the modules (`a.b.c` of module `a.b`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> tuple[set[str], set[str]]:
    """(the package's modules `module` imports, the top-level names of everything else it imports)."""
    inside: set[str] = set()
    outside: set[str] = set()

    def note(name: str) -> None:
        known = _known(name, modules)
        if known is not None:
            inside.add(known)
        elif not name.startswith(tuple(f"{m}." for m in modules)) and name not in modules:
            outside.add(name.partition(".")[0])

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                note(alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = _base(module, path, node.level)
                source = f"{base}.{source}" if source else base
            for alias in node.names:
                # `from pkg import mod` imports the module; `from mod import name` the module it is in.
                if f"{source}.{alias.name}" in modules:
                    inside.add(f"{source}.{alias.name}")
                else:
                    note(source)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            inside.add(node.value)  # import_module("pbxbridge.x"): an import all the same
    inside.discard(module)
    return inside, outside


def import_graph(root: Path, package: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the package's modules it imports, module -> the outside packages it imports)."""
    modules = package_modules(root, package)
    graph, outside = {}, {}
    for name, path in modules.items():
        graph[name], outside[name] = imports_of(name, path, modules)
    return graph, outside


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[int, str] | None:
    """(the layer's position, its name) for a module: the most specific entry that names it."""
    best: tuple[int, int, str] | None = None  # (specificity, position, name)
    for position, (name, entries) in enumerate(layers):
        for entry in entries:
            if entry.endswith(".*"):
                prefix = entry[:-1]
                matches, specificity = module == entry[:-2] or module.startswith(prefix), len(prefix)
            else:
                matches, specificity = module == entry, len(entry) + 1  # exact beats a wildcard
            if matches and (best is None or specificity > best[0]):
                best = (specificity, position, name)
    return None if best is None else (best[1], best[2])


def layering_problems(
    root: Path, package: str, layers: tuple[tuple[str, tuple[str, ...]], ...]
) -> tuple[list[str], list[list[str]], list[str], list[str]]:
    """(modules no layer names, import cycles, upward imports, I/O imported below `access`)."""
    graph, outside = import_graph(root, package)
    placed = {module: layer_of(module, layers) for module in graph}
    unplaced = sorted(m for m, layer in placed.items() if layer is None)
    upward, io = [], []
    for module, targets in sorted(graph.items()):
        here = placed[module]
        if here is None:
            continue
        for target in sorted(targets):
            there = placed[target]
            if there is not None and there[0] > here[0]:
                upward.append(f"{module} ({here[1]}) imports {target} ({there[1]})")
        if here[1] in IO_FREE_LAYERS:
            io += [f"{module} ({here[1]}) imports {name}" for name in sorted(outside[module] & IO_LIBRARIES)]
    return unplaced, cycles(graph), upward, io


def test_the_package_has_no_import_cycle_and_no_upward_import() -> None:
    unplaced, loops, upward, io = layering_problems(PACKAGE_ROOT, "pbxbridge", LAYERS)
    assert not unplaced, f"modules in no layer (add each to LAYERS in {Path(__file__).name}): {unplaced}"
    assert not loops, f"import cycles: {loops}"
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)
    assert not io, "AWS or network below the access layer:\n" + "\n".join(io)


def test_every_layer_entry_names_a_module() -> None:
    # A renamed or removed module leaves no stale entry behind, which would place nothing.
    modules = package_modules(PACKAGE_ROOT, "pbxbridge")
    for name, entries in LAYERS:
        for entry in entries:
            named = entry[:-2] if entry.endswith(".*") else entry
            assert named in modules, f"{name}: no module {named} ({entry})"


# The checker itself, on a small package written for the purpose: it finds what it is meant to find.

TOY_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("low", ("toy", "toy.low", "toy.low_peer")),
    ("high", ("toy.high", "toy.sub.*")),
)


def write_toy(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in {"toy/__init__.py": "", **files}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def test_the_checker_finds_a_cycle_through_lazy_and_type_only_imports(tmp_path: Path) -> None:
    write_toy(
        tmp_path,
        {
            "toy/low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.low_peer import X\n",
            "toy/low_peer.py": "def f():\n    from toy import low\n    return low\n",
            "toy/high.py": "import toy.low\n",
        },
    )
    unplaced, loops, upward, io = layering_problems(tmp_path, "toy", TOY_LAYERS)
    assert loops == [["toy.low", "toy.low_peer"]]
    assert (unplaced, upward, io) == ([], [], [])


def test_the_checker_finds_an_upward_import_relative_or_by_name(tmp_path: Path) -> None:
    write_toy(
        tmp_path,
        {
            "toy/low.py": "def f():\n    from .sub.top import thing\n    return thing\n",
            "toy/low_peer.py": "import importlib\nimportlib.import_module('toy.high')\nimport requests\n",
            "toy/high.py": "from toy.low import f\n",
            "toy/sub/__init__.py": "",
            "toy/sub/top.py": "thing = 1\n",
            "toy/stray.py": "",
        },
    )
    unplaced, loops, upward, _ = layering_problems(tmp_path, "toy", TOY_LAYERS)
    assert unplaced == ["toy.stray"]
    assert loops == []
    assert upward == ["toy.low (low) imports toy.sub.top (high)", "toy.low_peer (low) imports toy.high (high)"]


def test_the_checker_finds_io_below_the_access_layer(tmp_path: Path) -> None:
    write_toy(tmp_path, {"toy/low.py": "def f():\n    import boto3\n    from http import client\n"})
    layers = (("domain", ("toy", "toy.*")),)
    *_, io = layering_problems(tmp_path, "toy", layers)
    assert io == ["toy.low (domain) imports boto3", "toy.low (domain) imports http"]
