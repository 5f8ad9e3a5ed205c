"""Which modules the worker imports before it forks, read from asyncfc's source.

Two kinds, both found by parsing every module of the package (so the lists
follow the code):

- **Libraries**: every module asyncfc imports from outside itself, also
  inside functions (LiteLLM, ``rich.live``, ``mcp.client.stdio`` are imported
  lazily), except :data:`NOT_PREIMPORTED`.
- **asyncfc's own modules**, except the ones whose import makes state that
  belongs to one process (:data:`PER_PROCESS`) and every module that imports
  one of those while it loads. Those are imported by each child, after it has
  become the caller's process. Per-process state that a preimported module
  keeps (``tools/processes.py``: a process token, call numbers, pids) is
  renewed in every forked child by ``os.register_at_fork``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from asyncfc_cli.warm import freshness

# Imported only where used: Ray takes seconds and starts threads of its own.
NOT_PREIMPORTED = ("ray",)

# asyncfc's modules (relative to the package) whose import sets up something
# for the process it runs in: a Rich console made for the terminal and the
# environment it starts with (bench.suite), a directory found from the
# working directory (bench.workloads). A child imports them itself. (cli is
# not one: its console is made per process, on first use, commands/common.py.)
PER_PROCESS = ("bench.suite", "bench.workloads", "__main__")
# The worker's own module runs as ``__main__`` (client.BOOT); imported again it would be a second copy.
NOT_IMPORTED = ("warm.worker",)


@dataclass
class Package:
    name: str  # the package's import name
    libraries: set[str] = field(default_factory=set)  # outside modules imported anywhere
    modules: dict[str, str] = field(default_factory=dict)  # own module name -> file
    loads: dict[str, set[str]] = field(default_factory=dict)  # own module -> own modules it imports as it loads


def _module_name(package: str, package_dir: str, path: str) -> str:
    relative = path[len(package_dir) + 1:-len(".py")].replace("/", ".")
    if relative == "__init__":
        return package
    if relative.endswith(".__init__"):
        relative = relative[:-len(".__init__")]
    return f"{package}.{relative}"


def _at_load(tree: ast.Module) -> list[ast.stmt]:
    """The statements that run when the module is imported (not function bodies),
    walked without recursion."""
    found = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for name in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(node, name, None) or ():
                if isinstance(child, ast.ExceptHandler):
                    stack.extend(child.body)
                elif isinstance(child, ast.stmt):
                    stack.append(child)
    return found


def _imported(node: ast.stmt, module: str, is_package: bool) -> list[str]:
    """Module names an import statement may load (``from m import x``: m, and m.x if x is one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:max(keep, 0)] + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]


def scan(package: str, package_dir: str) -> Package:
    found = Package(package)
    files = sorted(e.path for e in freshness.package_files(package_dir) if e.name.endswith(".py"))
    trees = {}
    for path in files:
        try:
            with open(path, "rb") as f:
                trees[_module_name(package, package_dir, path)] = (path, ast.parse(f.read(), path))
        except (OSError, SyntaxError, ValueError):
            continue
    found.modules = {name: path for name, (path, _) in trees.items()}
    for name, (path, tree) in trees.items():
        is_package = path.endswith("/__init__.py")
        loads: set[str] = set()
        at_load = {id(node) for node in _at_load(tree)}
        for node in ast.walk(tree):
            for target in _imported(node, name, is_package) if isinstance(node, ast.stmt) else ():
                top = target.split(".")[0]
                if top == package:
                    if id(node) in at_load and target in found.modules:
                        loads.add(target)
                elif top not in ("__future__", *NOT_PREIMPORTED) and not node_is_relative(node):
                    found.libraries.add(target)
        # Importing a module loads the packages it is in first.
        parts = name.split(".")
        loads.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in found.modules)
        found.loads[name] = loads
    return found


def node_is_relative(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.level > 0


def per_command(found: Package) -> set[str]:
    """asyncfc's modules a child imports itself: :data:`PER_PROCESS` and whatever loads one of them."""
    held = {f"{found.name}.{name}" for name in PER_PROCESS} & set(found.modules)
    changed = True
    while changed:
        changed = False
        for name, loads in found.loads.items():
            if name not in held and loads & held:
                held.add(name)
                changed = True
    return held


def preimported(found: Package) -> list[str]:
    """asyncfc's modules the worker imports, in name order (imports pull in the rest as needed)."""
    skipped = per_command(found) | {f"{found.name}.{name}" for name in NOT_IMPORTED}
    return sorted(name for name in found.modules if name not in skipped)
