"""A static screen of the student's cells for constructs that have no honest use in an answer.

Run before the notebook, on the student's cells (answer cells and their own extra cells), after
IPython's own input transformation (so `%timeit` and `!ls` are screened as the calls they become).
What it refuses changes what the tests see or rely on: `__builtins__`; attributes of imported
modules and classes or of what locked cells bound (`np.allclose = ...`, `setattr(np, ...)`,
`torch.Tensor.__eq__ = ...`, `raises.__code__ = ...`); `sys.modules` entries; import hooks
(`sys.meta_path`, `sys.path_hooks`); trace functions; IPython's hooks, events and shell methods
(`get_ipython().events.register`, input transformers, `run_cell`); code that reads or rewrites
other cells (`In`, `_ih`, `set_next_input`) or reaches into frames and the garbage collector;
and ways around blocked imports (`runpy`, loading a module from a file, `%run`). A cell that does
not parse is left to run (and fail) as it is. Ordinary habits — re-importing a module, helper
functions, printing, shadowing a builtin with a variable, settings such as
`torch.backends.cudnn.deterministic = True` — pass.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from nbformat import NotebookNode

from autograder.notebooks import grade_id, is_instructor_cell

#: get_ipython() methods an answer may call (what `%magic` and `!cmd` become).
IPYTHON_ALLOWED = {"run_line_magic", "run_cell_magic", "system", "getoutput"}
#: magics that run or load other code (around blocked imports) or reconfigure the shell.
MAGICS_REFUSED = {"run", "load", "loadpy", "load_ext", "reload_ext", "config", "autoreload",
                  "aimport", "alias_magic"}
#: attribute paths where assignment is configuration, not patching.
SETTINGS = {"backends", "options", "config", "rcParams", "defaults", "flags", "environ"}
#: function attributes that swap a function's behaviour in place.
FUNCTION_INNARDS = {"__code__", "__defaults__", "__kwdefaults__", "__globals__", "__closure__",
                    "__builtins__"}
#: calls that reach into frames, other objects or the import system.
CALLS_REFUSED = {
    "sys.settrace": "sets a trace function", "sys.setprofile": "sets a profile function",
    "threading.settrace": "sets a trace function", "threading.setprofile":
    "sets a profile function", "threading.settrace_all_threads": "sets a trace function",
    "threading.setprofile_all_threads": "sets a profile function",
    "sys._getframe": "reads frames", "sys._current_frames": "reads frames",
    "inspect.currentframe": "reads frames", "inspect.stack": "reads frames",
    "inspect.getouterframes": "reads frames", "gc.get_objects": "searches the garbage collector",
    "gc.get_referrers": "searches the garbage collector",
    "gc.get_referents": "searches the garbage collector",
    "runpy.run_path": "runs a module around the blocked imports",
    "runpy.run_module": "runs a module around the blocked imports",
    "importlib.util.spec_from_file_location": "loads a module from a file",
    "importlib.util.module_from_spec": "loads a module from a file",
    "importlib.machinery.SourceFileLoader": "loads a module from a file",
    "importlib.reload": "reloads a module", "atexit.register": "registers an exit hook",
    "sys.addaudithook": "installs an audit hook",
}
SYS_REFUSED = {"meta_path": "changes the import hooks (sys.meta_path)",
               "path_hooks": "changes the import hooks (sys.path_hooks)",
               "path_importer_cache": "changes the import hooks (sys.path_importer_cache)",
               "settrace": "sets a trace function", "setprofile": "sets a profile function",
               "excepthook": "replaces sys.excepthook", "displayhook": "replaces sys.displayhook",
               "_getframe": "reads frames", "_current_frames": "reads frames"}
HISTORY_NAMES = {"In", "_ih", "_i", "_ii", "_iii", "_oh", "Out"}
MUTATING_METHODS = {"__setitem__", "__delitem__", "pop", "popitem", "update", "setdefault",
                    "clear"}


@dataclass
class Finding:
    index: int  # the cell's position in the notebook
    what: str

    def reason(self, nb: NotebookNode) -> str:
        cell = nb.cells[self.index]
        name = grade_id(cell) or f"the student's cell {self.index + 1}"
        return f"{name} {self.what}"


def student_cells(nb: NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and not is_instructor_cell(c)]


def screen(nb: NotebookNode, blocked: list[str]) -> dict[int, str]:
    """Cell index -> reason, for every student cell that holds a refused construct."""
    locked_names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and is_instructor_cell(cell):
            locked_names.update(_definitions(cell.source))
    found = {}
    for index in student_cells(nb):
        what = screen_source(nb.cells[index].source, locked_names, blocked)
        if what:
            found[index] = Finding(index, what).reason(nb)
    return found


def screen_source(source: str, locked_names: set[str] = frozenset(),
                  blocked: list[str] = ()) -> str:
    """What `source` does that no honest answer does, or "" if nothing."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        code = TransformerManager().transform_cell(source)
        tree = ast.parse(code)
    except Exception:  # IPython or the parser refuse it: the cell will fail on its own
        return ""
    return _Screen(tree, locked_names, list(blocked)).first()


def _definitions(source: str) -> set[str]:
    """Modules, functions and classes a locked cell binds at its top level (`np`, `raises`);
    not its data (a test's `model` may take attributes)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


class _Screen:
    def __init__(self, tree: ast.AST, locked_names: set[str], blocked: list[str]):
        self.tree = tree
        self.blocked = blocked
        self.modules: dict[str, str] = {}  # local name -> module path, from imports
        self.ipython: set[str] = {"get_ipython"}  # names of get_ipython and its result
        self.stored: set[str] = set()  # names the cell itself binds (a variable `In` is fine)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.modules[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    self.modules[a.asname or a.name] = f"{node.module}.{a.name}"
                    if a.name == "get_ipython":
                        self.ipython.add(a.asname or a.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.stored.add(node.id)
        # names a locked cell bound (np, torch, raises, ...) are library-like too, unless the
        # student rebinds them to something of their own (a later `np = ...` is not an import)
        self.library = set(self.modules) | (locked_names - self.stored)
        for node in ast.walk(tree):  # ip = get_ipython()
            if isinstance(node, ast.Assign) and self._is_ipython(node.value):
                self.ipython.update(t.id for t in node.targets if isinstance(t, ast.Name))

    # -- what a name or expression refers to -------------------------------------------------
    def _path(self, node: ast.AST) -> str:
        """The dotted path of an expression with imports resolved (`np.x` -> `numpy.x`)."""
        dotted = _dotted(node)
        if not dotted:
            return ""
        head, _, rest = dotted.partition(".")
        base = self.modules.get(head, head)
        return f"{base}.{rest}" if rest else base

    def _root(self, node: ast.AST) -> ast.AST:
        while True:
            if isinstance(node, (ast.Attribute, ast.Subscript)):
                node = node.value
            elif isinstance(node, ast.Call) and _dotted(node.func) in ("getattr", "vars") \
                    and node.args:
                node = node.args[0]
            else:
                return node

    def _is_library(self, node: ast.AST) -> bool:
        """An imported module or class, or something a locked cell bound (or a sys.modules
        entry / __import__ result)."""
        root = self._root(node)
        if isinstance(root, ast.Name):
            return root.id in self.library
        if isinstance(root, ast.Call):
            return _dotted(root.func) in ("__import__", "importlib.import_module")
        return False

    def _is_ipython(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            return name in self.ipython or name.endswith(".get_ipython")
        return isinstance(node, ast.Name) and node.id in self.ipython and \
            node.id != "get_ipython"

    def _settings(self, node: ast.AST) -> bool:
        return bool(set(_dotted(node).split(".")) & SETTINGS)

    # -- the checks ----------------------------------------------------------------------------
    def first(self) -> str:
        for node in ast.walk(self.tree):
            what = self._check(node)
            if what:
                line = getattr(node, "lineno", 0)
                return f"{what} (line {line})" if line else what
        return ""

    def _check(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name) and node.id == "__builtins__":
            return "replaces or reads __builtins__"
        if isinstance(node, ast.Constant) and node.value == "__builtins__":
            return "replaces or reads __builtins__"
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and \
                node.id in HISTORY_NAMES and node.id not in self.stored:
            return f"reads or rewrites other cells through IPython's {node.id}"
        if isinstance(node, ast.Attribute):
            what = self._attribute(node)
            if what:
                return what
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                what = self._store(target)
                if what:
                    return what
        if isinstance(node, ast.Call):
            return self._call(node)
        return ""

    def _attribute(self, node: ast.Attribute) -> str:
        if isinstance(node.value, ast.AST) and self._is_ipython(node.value) and \
                node.attr not in IPYTHON_ALLOWED:
            return f"uses IPython's {node.attr} (hooks and the shell are the grader's)"
        if node.attr in ("f_back", "f_globals", "f_locals", "tb_frame", "gi_frame"):
            return "reads frames"
        if node.attr == "__subclasses__":
            return "searches the class hierarchy (__subclasses__)"
        if self._path(node.value) == "sys" and node.attr in SYS_REFUSED:
            return SYS_REFUSED[node.attr]
        return ""

    def _store(self, target: ast.AST) -> str:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                what = self._store(element)
                if what:
                    return what
            return ""
        if isinstance(target, ast.Starred):
            return self._store(target.value)
        if isinstance(target, ast.Attribute) and target.attr in FUNCTION_INNARDS:
            return f"replaces a function's {target.attr}"
        if isinstance(target, ast.Subscript) and self._path(target.value) == "sys.modules":
            return "replaces a sys.modules entry"
        if isinstance(target, ast.Attribute) and self._is_library(target.value) and \
                not self._settings(target):
            return f"patches {self._path(target) or target.attr}"
        if isinstance(target, ast.Subscript) and isinstance(target.value, (ast.Call,
                                                                          ast.Attribute)):
            inner = target.value
            is_dict = (isinstance(inner, ast.Call) and _dotted(inner.func) == "vars") or (
                isinstance(inner, ast.Attribute) and inner.attr == "__dict__")
            if is_dict and self._is_library(inner):
                return "patches a module's or class's namespace"
        return ""

    def _call(self, node: ast.Call) -> str:
        name = self._path(node.func)
        if name in CALLS_REFUSED:
            return CALLS_REFUSED[name]
        if name in ("setattr", "delattr", "object.__setattr__", "type.__setattr__") and \
                node.args and self._is_library(node.args[0]):
            return f"patches {self._path(node.args[0]) or 'a library'} with {name}"
        if isinstance(node.func, ast.Attribute):
            owner = self._path(node.func.value)
            if owner == "sys.modules" and node.func.attr in MUTATING_METHODS:
                return "replaces a sys.modules entry"
            if node.func.attr in MUTATING_METHODS and isinstance(node.func.value, ast.Attribute) \
                    and node.func.value.attr == "__dict__" and self._is_library(node.func.value):
                return "patches a module's or class's namespace"
            if self._is_ipython(node.func.value) and node.func.attr in ("run_line_magic",
                                                                        "run_cell_magic"):
                magic = node.args[0].value if node.args and isinstance(
                    node.args[0], ast.Constant) else ""
                if magic in MAGICS_REFUSED:
                    return f"runs %{magic} (other code is not part of an answer)"
        if name in ("exec", "eval", "compile") and node.args:
            text = ast.dump(node.args[0])
            if any(word in text for word in ("open", "read_text", "read_bytes", "getsource",
                                             "get_source", "llmlab")):
                return f"runs code read from a file with {name}"
        if name in ("open", "io.open") and node.args and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).endswith(".ipynb"):
            return "opens a notebook file (cells are not rewritten by answers)"
        if name == "nbformat.write":
            return "writes a notebook (cells are not rewritten by answers)"
        if any(isinstance(a, ast.Constant) and isinstance(a.value, str) and any(
                a.value == b or a.value.startswith(b + ".") or f"{b.replace('.', '/')}.py"
                in a.value for b in self.blocked) for a in node.args) and name not in (
                "print", "", "str"):
            return f"loads a blocked module ({', '.join(self.blocked)}) by name"
        return ""
