"""In-kernel integrity checks, run by the grader around the student's code.

Tests run in the student's kernel, so student code could make wrong answers pass by patching what
the tests rely on. Before any student code runs, `startup_code` snapshots the namespaces of
builtins, numpy (and torch when the assignment uses it) and IPython's execution hooks; before each
test cell, `check_code` compares them with the snapshot, restores IPython's hooks and reports what
changed. A report of changes makes the grade `tampered`.

This is a best-effort check inside a process the student's code also runs in: it catches patching
by assignment (`np.allclose = ...`, input or AST transformers, a replaced `run_cell`), not a
determined attacker who hunts the snapshot down. The operating-system sandbox (`sandbox.py`) is the
boundary for secrets and the network; its module docstring says what it does not cover.
"""

from __future__ import annotations

import ast
import secrets

_TEMPLATE = r'''
def _install(name, watched, blocked):
    import builtins, importlib, importlib.abc, sys, types
    from IPython import get_ipython
    ip = get_ipython()
    modules = {}
    for modname in watched:
        try:
            modules[modname] = importlib.import_module(modname)
        except Exception:
            pass
    spaces = dict(modules)
    if "torch" in modules:
        spaces["torch.Tensor"] = modules["torch"].Tensor
    snapshot = {key: dict(vars(obj)) for key, obj in spaces.items()}
    import os
    package_dirs = tuple(os.path.dirname(m.__file__) + os.sep for m in modules.values()
                         if getattr(m, "__file__", None))

    def rewrapped(new, old):
        # a library re-decorating its own function (torch.optim imports torch._dynamo, which
        # wraps torch.manual_seed): the new object wraps the old and its code is the library's
        inner, depth = getattr(new, "__wrapped__", None), 0
        while inner is not None and depth < 8:
            if inner is old:
                code = getattr(new, "__code__", None)
                return code is not None and code.co_filename.startswith(package_dirs)
            inner, depth = getattr(inner, "__wrapped__", None), depth + 1
        return False

    shell_names = ("run_cell", "run_cell_async", "run_code", "run_ast_nodes", "transform_cell",
                   "showtraceback", "_showtraceback", "showsyntaxerror", "should_run_async")
    shell_methods = {n: (getattr(type(ip), n, None), vars(ip).get(n)) for n in shell_names}
    hooks = {"input_transformers_cleanup": list(ip.input_transformers_cleanup),
             "input_transformers_post": list(ip.input_transformers_post),
             "ast_transformers": list(ip.ast_transformers)}
    # ipykernel swaps builtins.input on every request; IPython's builtin trap puts these three
    # in only while a cell runs (user_expressions are evaluated outside it)
    volatile = {"input", "get_ipython", "exit", "quit"}

    class _Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            for prefix in blocked:
                if fullname == prefix or fullname.startswith(prefix + "."):
                    raise ImportError(f"importing {fullname} is disabled while grading: "
                                      "write the answer yourself")
            return None

    if blocked:
        for modname in list(sys.modules):
            if any(modname == p or modname.startswith(p + ".") for p in blocked):
                del sys.modules[modname]
        sys.meta_path.insert(0, _Blocker())

    def check():
        problems = []
        for key, obj in spaces.items():
            if "." not in key and sys.modules.get(key) is not obj:
                problems.append(f"module {key} was replaced")
            now = vars(obj)
            is_class = isinstance(obj, type)  # a class's operators are dunders: check them
            changed = sorted(k for k, v in snapshot[key].items()
                             if (is_class or not k.startswith("_")) and k not in volatile
                             and now.get(k, check) is not v and not rewrapped(now.get(k), v))
            if is_class:  # a new entry shadows an inherited method (Tensor.__eq__ is TensorBase's)
                changed += sorted(set(now) - set(snapshot[key]))
            if changed:
                problems.append(f"{key}: {', '.join(changed[:5])} changed")
        for n, (on_class, on_instance) in shell_methods.items():
            if getattr(type(ip), n, None) is not on_class or vars(ip).get(n) is not on_instance:
                problems.append(f"IPython {n} was replaced")
        for attr, original in hooks.items():
            if list(getattr(ip, attr)) != original:
                problems.append(f"IPython {attr} were changed")
                setattr(ip, attr, list(original))
        if getattr(ip, "custom_exceptions", ()) != ():
            problems.append("IPython custom exception handler was set")
            ip.set_custom_exc((), None)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            problems.append("a trace or profile function was set")
        if not isinstance(sys.meta_path[0], _Blocker) and blocked:
            problems.append("the import blocker was removed")
        return problems

    guard = types.ModuleType(name)
    guard.check = check
    sys.modules[name] = guard
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

    def check_expression(self) -> str:
        """Evaluated as a `user_expressions` entry: the report travels in the execute reply."""
        return f"__import__('sys').modules[{self.name!r}].check()"

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
