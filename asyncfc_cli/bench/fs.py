"""Our own in-memory file system for BFCL multi-turn sessions.

BFCL's multi-turn file-system class is documented in
``multi_turn_func_doc/gorilla_file_system.json`` (names, parameters, what
each returns); this is an independent implementation of those documents, not
BFCL's code. State is one directory tree and a current directory, loaded from
an entry's ``initial_config``. Every operation is relative to the current
directory, which is why every one of these tools is declared ``ordered``: a
``grep`` issued after a ``cd`` must see the directory the ``cd`` chose.

Failures come back as ``{"error": "..."}`` values, as a real shell reports
them, not as exceptions: a session goes on after a failed command.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from typing import Any

OPERATIONS = ("pwd", "ls", "cd", "mkdir", "touch", "echo", "cat", "find", "wc", "sort", "grep",
              "du", "tail", "diff", "mv", "rm", "rmdir", "cp")


@dataclass
class File:
    content: str = ""


@dataclass
class Directory:
    contents: dict[str, Directory | File] = field(default_factory=dict)
    parent: Directory | None = field(default=None, repr=False, compare=False)


def _load(contents: dict[str, Any], parent: Directory) -> Directory:
    for name, node in contents.items():
        if node.get("type") == "directory":
            child = Directory(parent=parent)
            _load(node.get("contents") or {}, child)
            parent.contents[name] = child
        else:
            parent.contents[name] = File(str(node.get("content", "")))
    return parent


def _dump(directory: Directory) -> dict[str, Any]:
    return {
        name: {"type": "directory", "contents": _dump(node)} if isinstance(node, Directory)
        else {"type": "file", "content": node.content}
        for name, node in directory.contents.items()
    }


def _size(node: Directory | File) -> int:
    if isinstance(node, File):
        return len(node.content.encode())
    return sum(_size(n) for n in node.contents.values())


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size} B"  # pragma: no cover


class FileSystem:
    """One session's file system: ``call(name, args)`` runs one documented operation."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        root = (config or {}).get("root") or {"workspace": {"type": "directory", "contents": {}}}
        (self.root_name, node), = root.items()
        self.root = _load(node.get("contents") or {}, Directory())
        self.cwd = self.root

    # -- helpers ---------------------------------------------------------------------

    def path_of(self, directory: Directory) -> str:
        parts: list[str] = []
        while directory.parent is not None:
            parent = directory.parent
            parts.append(next(n for n, d in parent.contents.items() if d is directory))
            directory = parent
        return "/" + "/".join([self.root_name, *reversed(parts)])

    def snapshot(self) -> dict[str, Any]:
        """The whole state, for comparing runs."""
        return {"cwd": self.path_of(self.cwd), "tree": _dump(self.root)}

    def _file(self, op: str, name: str) -> File | dict[str, str]:
        node = self.cwd.contents.get(name)
        if not isinstance(node, File):
            what = "Is a directory" if isinstance(node, Directory) else "No such file"
            return {"error": f"{op}: {name}: {what}"}
        return node

    def call(self, name: str, args: dict[str, Any]) -> Any:
        if name not in OPERATIONS:
            return {"error": f"{name}: no such command"}
        try:
            return getattr(self, f"op_{name}")(**args)
        except TypeError as exc:  # wrong or missing arguments from the model
            return {"error": f"{name}: {exc}"}

    # -- operations (names and results as in the BFCL documents) ---------------------

    def op_pwd(self) -> dict[str, Any]:
        return {"current_working_directory": self.path_of(self.cwd)}

    def op_ls(self, a: bool = False) -> dict[str, Any]:
        names = [n for n in self.cwd.contents if a or not n.startswith(".")]
        return {"current_directory_content": names}

    def op_cd(self, folder: str) -> dict[str, Any]:
        target = self.root if folder.startswith("/") else self.cwd
        for part in [p for p in folder.split("/") if p and p != "."]:
            if part == "..":
                target = target.parent or target
                continue
            node = target.contents.get(part)
            if not isinstance(node, Directory):
                return {"error": f"cd: {folder}: No such directory"}
            target = node
        self.cwd = target
        return {"current_working_directory": self.path_of(self.cwd)}

    def op_mkdir(self, dir_name: str) -> dict[str, Any]:
        if "/" in dir_name or not dir_name:
            return {"error": f"mkdir: {dir_name}: only a name in the current directory"}
        if dir_name in self.cwd.contents:
            return {"error": f"mkdir: {dir_name}: File exists"}
        self.cwd.contents[dir_name] = Directory(parent=self.cwd)
        return {}

    def op_touch(self, file_name: str) -> dict[str, Any]:
        if "/" in file_name or not file_name:
            return {"error": f"touch: {file_name}: only a name in the current directory"}
        if file_name in self.cwd.contents:
            return {"error": f"touch: {file_name}: File exists"}
        self.cwd.contents[file_name] = File()
        return {}

    def op_echo(self, content: str, file_name: str | None = None) -> dict[str, Any]:
        if file_name in (None, "", "None"):
            return {"terminal_output": content}
        node = self.cwd.contents.get(file_name)
        if isinstance(node, Directory):
            return {"error": f"echo: {file_name}: Is a directory"}
        self.cwd.contents[file_name] = File(content)
        return {"terminal_output": None}

    def op_cat(self, file_name: str) -> dict[str, Any]:
        node = self._file("cat", file_name)
        return node if isinstance(node, dict) else {"file_content": node.content}

    def op_find(self, path: str = ".", name: str | None = None) -> dict[str, Any]:
        start = self.cwd
        for part in [p for p in path.split("/") if p and p != "."]:
            node = start.contents.get(part) if part != ".." else start.parent
            if not isinstance(node, Directory):
                return {"error": f"find: {path}: No such directory"}
            start = node
        prefix = path.rstrip("/") or "."
        matches: list[str] = []

        def walk(directory: Directory, base: str) -> None:
            for child, node in directory.contents.items():
                full = f"{base}/{child}"
                if name in (None, "None") or name in child:
                    matches.append(full)
                if isinstance(node, Directory):
                    walk(node, full)

        walk(start, prefix)
        return {"matches": matches}

    def op_wc(self, file_name: str, mode: str = "l") -> dict[str, Any]:
        node = self._file("wc", file_name)
        if isinstance(node, dict):
            return node
        counts = {"l": ("lines", len(node.content.splitlines())),
                  "w": ("words", len(node.content.split())),
                  "c": ("characters", len(node.content))}
        if mode not in counts:
            return {"error": f"wc: invalid mode {mode!r}; use 'l', 'w' or 'c'"}
        kind, count = counts[mode]
        return {"count": count, "type": kind}

    def op_sort(self, file_name: str) -> dict[str, Any]:
        node = self._file("sort", file_name)
        return node if isinstance(node, dict) else {"sorted_content": "\n".join(sorted(node.content.splitlines()))}

    def op_grep(self, file_name: str, pattern: str) -> dict[str, Any]:
        node = self._file("grep", file_name)
        if isinstance(node, dict):
            return node
        return {"matching_lines": [line for line in node.content.splitlines() if pattern in line]}

    def op_du(self, human_readable: bool = False) -> dict[str, Any]:
        size = _size(self.cwd)
        return {"disk_usage": _human(size) if human_readable else f"{size} bytes"}

    def op_tail(self, file_name: str, lines: int = 10) -> dict[str, Any]:
        node = self._file("tail", file_name)
        if isinstance(node, dict):
            return node
        return {"last_lines": "\n".join(node.content.splitlines()[-max(int(lines), 0):] if lines else [])}

    def op_diff(self, file_name1: str, file_name2: str) -> dict[str, Any]:
        first, second = self._file("diff", file_name1), self._file("diff", file_name2)
        for node in (first, second):
            if isinstance(node, dict):
                return node
        lines = [d for d in difflib.ndiff(first.content.splitlines(), second.content.splitlines())
                 if d[:2] in ("- ", "+ ")]
        return {"diff_lines": "\n".join(lines)}

    def _move(self, op: str, source: str, destination: str, keep: bool) -> dict[str, Any]:
        node = self.cwd.contents.get(source)
        if node is None:
            return {"error": f"{op}: cannot stat '{source}': No such file or directory"}
        if "/" in destination or not destination:
            return {"error": f"{op}: destination '{destination}' must be a name in the current directory"}
        target = self.cwd.contents.get(destination)
        if isinstance(target, Directory):
            parent, new_name = target, source
        else:
            parent, new_name = self.cwd, destination
        if new_name in parent.contents and parent.contents[new_name] is not node:
            return {"error": f"{op}: '{destination}/{new_name}' already exists"}
        moved = _clone(node) if keep else node
        if not keep:
            del self.cwd.contents[source]
        if isinstance(moved, Directory):
            moved.parent = parent
            _reparent(moved)
        parent.contents[new_name] = moved
        verb = "copied" if keep else "moved"
        return {"result": f"'{source}' {verb} to '{destination}'"}

    def op_mv(self, source: str, destination: str) -> dict[str, Any]:
        return self._move("mv", source, destination, keep=False)

    def op_cp(self, source: str, destination: str) -> dict[str, Any]:
        return self._move("cp", source, destination, keep=True)

    def op_rm(self, file_name: str) -> dict[str, Any]:
        if file_name not in self.cwd.contents:
            return {"error": f"rm: cannot remove '{file_name}': No such file or directory"}
        del self.cwd.contents[file_name]
        return {"result": f"'{file_name}' removed"}

    def op_rmdir(self, dir_name: str) -> dict[str, Any]:
        node = self.cwd.contents.get(dir_name)
        if not isinstance(node, Directory):
            return {"error": f"rmdir: '{dir_name}': No such directory"}
        if node.contents:
            return {"error": f"rmdir: '{dir_name}': Directory not empty"}
        del self.cwd.contents[dir_name]
        return {"result": f"'{dir_name}' removed"}


def _clone(node: Directory | File) -> Directory | File:
    if isinstance(node, File):
        return File(node.content)
    copy = Directory()
    copy.contents = {name: _clone(child) for name, child in node.contents.items()}
    _reparent(copy)
    return copy


def _reparent(directory: Directory) -> None:
    for node in directory.contents.values():
        if isinstance(node, Directory):
            node.parent = directory
            _reparent(node)


def parse_call(source: str, params: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    """``"sort('a.txt')"`` -> ``("sort", {"file_name": "a.txt"})``.

    ``params`` gives each function's parameter names in documented order, for
    positional arguments. Only literals are accepted (ground truth has nothing else).
    """
    node = ast.parse(source.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain call: {source!r}")
    name = node.func.id
    names = params.get(name, [])
    args: dict[str, Any] = {}
    for i, arg in enumerate(node.args):
        if i >= len(names):
            raise ValueError(f"{source!r}: more positional arguments than {name} has parameters")
        args[names[i]] = ast.literal_eval(arg)
    for kw in node.keywords:
        args[kw.arg] = ast.literal_eval(kw.value)
    return name, args
