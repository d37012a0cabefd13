"""In-kernel integrity checks and the test namespace, run by the grader around the student's code.

Tests run in the student's kernel, so student code could make wrong answers pass by changing what
the tests rely on. `startup_code` runs before any student code: it captures every tool the checks
use (so none is looked up through a namespace the student controls), imports and snapshots the
modules the tests use (`watched_modules` derives them from the notebook's imports), IPython's
execution hooks and event callbacks and the import system, and installs the blocker of forbidden
imports. The grader then calls, through `user_expressions` of an otherwise empty request:

- `check_expression()` before every test cell: reports what changed (a replaced library function,
  `sys.modules` entry, import hook, trace function, IPython hook, `__builtins__`); if nothing did,
  the test cell runs in a namespace of its own, built from the student's names overlaid with the
  grader's copies of what locked cells bound, without the student's shadows of builtins, with the
  real builtins, and with only the event callbacks IPython had before any student code ran;
- `after_expression(names, was_test)` after every locked cell: records the grader's copies of the
  names the cell bound and, after a test, checks again and returns to the student's namespace.

The expressions reach the guard through attribute access on a literal (`().__class__`), never a
name, so replacing `__builtins__` or `__import__` cannot intercept them. A report of changes makes
the grade `tampered`. This is a check inside a process the student's code also runs in: it catches
changes to what the tests see, not a determined attacker who hunts the guard down (the static
screen, `screen.py`, refuses the constructs that would); the operating-system sandbox
(`sandbox.py`) is the boundary for secrets and the network. docs/grader-trust.md has the layers.
"""

from __future__ import annotations

import ast
import secrets

_TEMPLATE = r'''
def _install(name, watched, blocked):
    import builtins, importlib, importlib.abc, sys, threading, types
    from IPython import get_ipython
    # every tool the checks use is bound here, at install time, before any student code runs:
    # nothing below is looked up through a namespace the student controls
    (_vars, _getattr, _setattr, _isinstance, _type, _list, _dict, _set, _sorted, _len, _id,
     _str, _Exception, _ImportError, _object, _tuple) = (
        vars, getattr, setattr, isinstance, type, list, dict, set, sorted, len, id, str,
        Exception, ImportError, object, tuple)
    real_builtins = builtins
    builtin_names = _set(_vars(builtins))
    ip = get_ipython()
    modules, classes = {}, {}
    for path in watched:  # each a module, or a module's attribute (a class is watched too)
        try:
            modules[path] = importlib.import_module(path)
        except _Exception:
            parent, _, attr = path.rpartition(".")
            found = _getattr(sys.modules.get(parent), attr, None)
            if _isinstance(found, _type):
                classes[path] = found
    spaces = {**modules, **classes}
    snapshot = {key: _dict(_vars(obj)) for key, obj in spaces.items()}
    import os
    package_dirs = _tuple(os.path.dirname(m.__file__) + os.sep for m in modules.values()
                          if _getattr(m, "__file__", None))

    def rewrapped(new, old):
        # a library re-decorating its own function (torch.optim imports torch._dynamo, which
        # wraps torch.manual_seed): the new object wraps the old and its code is the library's
        inner, depth = _getattr(new, "__wrapped__", None), 0
        while inner is not None and depth < 8:
            if inner is old:
                code = _getattr(new, "__code__", None)
                return code is not None and code.co_filename.startswith(package_dirs)
            inner, depth = _getattr(inner, "__wrapped__", None), depth + 1
        return False

    def inherited(cls, name):
        for base in cls.__mro__[1:]:
            if name in _vars(base):
                return _vars(base)[name]
        return None

    def from_the_notebook(hook):
        # an import hook a library installs lives in a module with a file; one the notebook
        # defined lives in __main__ (or nowhere)
        owner = hook if _isinstance(hook, _type) or _isinstance(hook, types.FunctionType) \
            else _type(hook)
        module = sys.modules.get(_getattr(owner, "__module__", None) or "__main__")
        return module is None or not _getattr(module, "__file__", None) or \
            _getattr(module, "__name__", "") == "__main__"

    shell_names = ("run_cell", "run_cell_async", "run_code", "run_ast_nodes", "transform_cell",
                   "showtraceback", "_showtraceback", "showsyntaxerror", "should_run_async",
                   "user_expressions", "ex", "ev")
    shell_methods = {n: (_getattr(_type(ip), n, None), _vars(ip).get(n)) for n in shell_names}
    hooks = {"input_transformers_cleanup": _list(ip.input_transformers_cleanup),
             "input_transformers_post": _list(ip.input_transformers_post),
             "ast_transformers": _list(ip.ast_transformers)}
    events = {e: _list(cbs) for e, cbs in ip.events.callbacks.items()}
    # ipykernel swaps builtins.input on every request; IPython's builtin trap puts these three
    # in only while a cell runs (user_expressions are evaluated outside it)
    volatile = {"input", "get_ipython", "exit", "quit"}

    class _Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            for prefix in blocked:
                if fullname == prefix or fullname.startswith(prefix + "."):
                    raise _ImportError(f"importing {fullname} is disabled while grading: "
                                       "write the answer yourself")
            return None

    blocker = _Blocker()
    if blocked:
        for modname in _list(sys.modules):
            if any(modname == p or modname.startswith(p + ".") for p in blocked):
                module = sys.modules.pop(modname)
                parent, _, child = modname.rpartition(".")
                if parent in sys.modules and _getattr(sys.modules[parent], child, None) is module:
                    delattr(sys.modules[parent], child)  # `import llmlab; llmlab.gpt` too
        sys.meta_path.insert(0, blocker)
    meta_path, path_hooks = _list(sys.meta_path), _list(sys.path_hooks)

    state = {"locked": {}, "swapped": None, "events": None}

    def scan():
        """What changed in the watched modules, classes, import system and IPython."""
        problems = []
        for key, obj in spaces.items():
            if key in modules and sys.modules.get(key) is not obj:
                problems.append(f"sys.modules entry {key} was replaced")
            now = _vars(obj)
            is_class = _isinstance(obj, _type)  # a class's operators are dunders: check them
            changed = _sorted(k for k, v in snapshot[key].items()
                              if (is_class or not k.startswith("_")) and k not in volatile
                              and now.get(k, scan) is not v and not rewrapped(now.get(k), v))
            if is_class:  # a new entry shadows an inherited method (Tensor.__eq__ is TensorBase's)
                # except a library wrapping the inherited one on the class itself (the first
                # torch.optim.AdamW() wraps its inherited `step` in a profiling hook)
                changed += _sorted(k for k in _set(now) - _set(snapshot[key])
                                   if not rewrapped(now[k], inherited(obj, k)))
            if changed:
                problems.append(f"{key}: {', '.join(changed[:5])} changed")
        for n, (on_class, on_instance) in shell_methods.items():
            if _getattr(_type(ip), n, None) is not on_class or _vars(ip).get(n) is not on_instance:
                problems.append(f"IPython {n} was replaced")
        for attr, original in hooks.items():
            if _list(_getattr(ip, attr)) != original:
                problems.append(f"IPython {attr} were changed")
                _setattr(ip, attr, _list(original))
        if _getattr(ip, "custom_exceptions", ()) != ():
            problems.append("IPython custom exception handler was set")
            ip.set_custom_exc((), None)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            problems.append("a trace or profile function was set (sys.settrace/setprofile)")
        if threading.gettrace() is not None or threading.getprofile() is not None:
            problems.append("a thread trace or profile function was set (threading.settrace)")
        added = [h for h in sys.meta_path if h not in meta_path and from_the_notebook(h)]
        added += [h for h in sys.path_hooks if h not in path_hooks and from_the_notebook(h)]
        if added:
            problems.append(f"an import hook was installed ({_type(added[0]).__name__})")
        if blocked and blocker not in sys.meta_path:
            problems.append("the import blocker was removed")
        ns = ip.user_ns
        if ns.get("__builtins__", real_builtins) is not real_builtins and \
                ns.get("__builtins__") is not _vars(real_builtins):
            problems.append("__builtins__ of the notebook namespace was replaced")
        if ip.user_global_ns is not ns:
            problems.append("the notebook namespace was replaced")
        return problems

    def before_test():
        """Report tampering; if none, run the next cell in a namespace for the tests.

        The test namespace holds the student's names, then the grader's own copies of what
        locked cells bound, without the student's shadows of builtins, with the real builtins.
        The student's functions keep their own globals, so they run exactly as written.
        """
        problems = scan()
        if problems:
            return problems
        ns = ip.user_ns
        test_module = types.ModuleType("__main__")
        test_ns = test_module.__dict__
        test_ns.update(ns)
        for key in _list(test_ns):
            if key in builtin_names and not key.startswith("__") and key not in state["locked"]:
                del test_ns[key]
        test_ns.update(state["locked"])
        test_ns["__builtins__"] = real_builtins
        state["swapped"] = (ip.user_module, ns, _dict(test_ns))
        ip.user_module, ip.user_ns = test_module, test_ns
        # nothing the student registered runs while a test runs (or after hidden tests)
        state["events"] = {e: _list(cbs) for e, cbs in ip.events.callbacks.items()}
        for e, cbs in ip.events.callbacks.items():
            cbs[:] = events.get(e, [])
        return []

    def after_locked(names, was_test):
        """Record the grader's copies of what a locked cell bound; after a test, check again
        (a change made while the test ran, e.g. by a thread) and return to the student's
        namespace, keeping what the test cell bound."""
        problems = scan() if was_test else []
        ns = ip.user_ns
        for key in names:
            if key in ns:
                state["locked"][key] = ns[key]
        swapped, state["swapped"] = state["swapped"], None
        if swapped is not None:
            module, student_ns, entered = swapped
            for key, value in ns.items():
                if key != "__builtins__" and entered.get(key, scan) is not value:
                    student_ns[key] = value
            for key in entered:
                if key not in ns:
                    student_ns.pop(key, None)
            ip.user_module, ip.user_ns = module, student_ns
        saved, state["events"] = state["events"], None
        if saved is not None:
            for e, cbs in ip.events.callbacks.items():
                cbs[:] = saved.get(e, cbs)
        return problems

    guard = _type(name, (_tuple,), {"check": staticmethod(before_test),
                                     "after": staticmethod(after_locked)})
    sys.modules[name] = guard  # keeps the class alive
'''


class Guard:
    """Code strings for one grading run; names are random so a submission cannot predict them."""

    def __init__(self, watched: list[str], blocked: list[str]):
        self.name = "_ag_" + secrets.token_hex(8)
        self.watched = watched
        self.blocked = blocked

    def startup_code(self) -> str:
        return (_TEMPLATE + f"\n_install({self.name!r}, {self.watched!r}, {self.blocked!r})\n"
                "del _install\n")

    def _reach(self) -> str:
        # no name lookups: a comprehension over the subclasses of tuple, the guard first among
        # those created after the grader's start (subclasses are kept in creation order)
        return f"[c for c in ().__class__.__subclasses__() if c.__name__ == {self.name!r}][0]"

    def check_expression(self) -> str:
        """Evaluated as a `user_expressions` entry: the report travels in the execute reply."""
        return f"{self._reach()}.check()"

    def after_expression(self, names: list[str], was_test: bool) -> str:
        return f"{self._reach()}.after({sorted(names)!r}, {was_test!r})"

    @staticmethod
    def parse(expression_result: dict | None) -> list[str]:
        """Problems from the reply's user_expressions entry; no valid report is itself a problem."""
        if not expression_result or expression_result.get("status") != "ok":
            what = (expression_result or {}).get("ename", "no reply")
            return [f"the integrity check did not report ({what}): grading hooks were changed"]
        try:
            found = ast.literal_eval(expression_result["data"]["text/plain"])
        except (KeyError, ValueError, SyntaxError):
            return ["the integrity check's report was malformed"]
        if not isinstance(found, list):
            return ["the integrity check's report was malformed"]
        return [str(p) for p in found]


def bound_names(source: str) -> list[str]:
    """Names a (trusted, locked) cell binds at its top level: assignments, imports, defs."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return  # their bodies bind local names
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                             ast.GeneratorExp)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return sorted(names)


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted module (or module attribute) path, from a cell's imports."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name != "*":
                    found[a.asname or a.name] = f"{node.module}.{a.name}"
    return found


def _chain(node: ast.AST) -> list[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return []


def watched_modules(locked_sources: list[str], blocked: list[str]) -> list[str]:
    """What the tests rely on: every module locked cells import, and every module attribute
    reached from an import by attribute access (`np.testing.assert_allclose`, `torch.Tensor`),
    plus builtins. No fixed list: the kernel imports each path that is a module and watches each
    that is a class; the rest (functions, constants) are covered by their module."""
    aliases: dict[str, str] = {}
    trees = []
    for source in locked_sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        trees.append(tree)
        aliases.update(_aliases(tree))
    paths = {"builtins", *aliases.values()}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (chain := _chain(node)) and \
                    chain[0] in aliases:
                base = aliases[chain[0]]
                paths.update(".".join([base, *chain[1:depth + 1]])
                             for depth in range(1, len(chain)))
    if "torch" in paths:
        paths.add("torch.Tensor")  # every tensor comparison goes through it
    return sorted(p for p in paths
                  if not any(p == b or p.startswith(b + ".") for b in blocked))
