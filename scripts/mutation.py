"""Mutation testing of the security modules: does the suite notice when the logic is broken?

Issue 14 item 12: hand-made mutants of the security logic survived the suite (an exempted CSRF
check, an unhashed audit field).  This script makes such mutants mechanically, one at a time,
and runs the tests that exercise the mutated line.  It is a small AST mutator rather than a
general tool because the suite needs a real database and an app factory per test, and because
per-line test selection keeps a run over a module to minutes instead of hours.

Run it with ``make mutation`` (all the modules the issue names) or::

    python scripts/mutation.py idp/audit.py keys/rotation.py     # chosen modules
    python scripts/mutation.py --list idp/oauth/grants.py        # show the mutants only
    python scripts/mutation.py --function verify idp/audit.py    # one function
    python scripts/mutation.py --only 12,40 idp/audit.py         # re-check two survivors

It is not part of ``make test``: a module takes from seconds (``keys/rotation.py``) to tens of
minutes (``idp/oauth/authorize.py``) on two cores.

How it works, per module:

1. The source tree is copied to a temporary directory, so the working tree is never modified
   (an interrupted run leaves nothing behind).
2. The module's test subset (``MODULE_TESTS``) runs once under a line tracer that records
   which lines of the module each test executes and how long each test takes.  This run must
   pass.
3. Mutants are made from the AST, one change each: comparison operators flipped (``==``/``!=``,
   ``<``/``>=``, ``in``/``not in``, ``is``/``is not``), ``and``/``or`` swapped, ``not`` dropped,
   a bare condition negated, ``True``/``False`` swapped, integers changed by one, ``+``/``-``
   swapped, ``return x`` made ``return None``, a ``raise`` removed, a call statement removed,
   one entry dropped from a literal tuple, list or set (allow- and deny-lists).
   Docstrings, annotations, ``Literal[...]`` types, ``TYPE_CHECKING`` blocks, string
   constants and logging calls are left alone (changing them says nothing about security).
4. Each mutant runs only the tests that executed one of its lines (all of the subset for a
   module-level line, which runs at import), fastest first, stopping at the first failure.
   A failure or a time-out kills the mutant; a pass means it survived; a mutant on a line no
   test of the subset executes is reported as not covered.

The report (``.mutation/<module>.json`` in the working tree, and a summary on stdout) lists the
survivors with their line; ``docs/security.md`` ("Mutation testing") records the score and
what was done about each survivor in security logic.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: module -> the tests that exercise it.  Every module of idp/oauth, idp/interaction, keys/
#: and idp/audit.py is listed (the scope issue 14 names); the subsets are what keeps a run
#: feasible, so keep them to the tests that actually drive the module.
MODULE_TESTS: dict[str, list[str]] = {
    "idp/audit.py": ["tests/test_audit.py"],  # tests/test_cli.py only wraps verify()
    # idp/oauth
    "idp/oauth/authorize.py": [
        "tests/oauth/test_authorize.py",
        "tests/oauth/test_par.py",
        "tests/oauth/test_code_flow.py",
        "tests/oauth/test_consent_csrf.py",
    ],
    "idp/oauth/grants.py": [
        "tests/oauth/test_token_endpoint.py",
        "tests/oauth/test_refresh.py",
        "tests/oauth/test_code_flow.py",
        "tests/oauth/test_client_credentials.py",
    ],
    "idp/oauth/claims.py": ["tests/oauth/test_id_token.py", "tests/oauth/test_token_endpoint.py"],
    "idp/oauth/client_auth.py": [
        "tests/oauth/test_client_auth.py",
        "tests/oauth/test_jwt_hardening.py",
        "tests/oauth/test_token_endpoint.py",
    ],
    "idp/oauth/client_cache.py": ["tests/oauth/test_clients.py"],
    "idp/oauth/clients.py": ["tests/oauth/test_clients.py", "tests/admin"],
    "idp/oauth/discovery.py": ["tests/oauth/test_discovery.py"],
    "idp/oauth/endpoints.py": [
        "tests/oauth/test_revocation_introspection.py",
        "tests/oauth/test_cors_headers.py",
        "tests/oauth/test_token_endpoint.py",
    ],
    "idp/oauth/jose_inbound.py": ["tests/oauth/test_jwt_hardening.py", "tests/oauth/test_par.py"],
    "idp/oauth/logout.py": ["tests/oauth/test_logout.py"],
    "idp/oauth/outbound.py": ["tests/oauth/test_outbound_private.py", "tests/oauth/test_logout.py"],
    "idp/oauth/par.py": ["tests/oauth/test_par.py"],
    "idp/oauth/request_object.py": [
        "tests/oauth/test_jwt_hardening.py",
        "tests/oauth/test_par.py",
        "tests/oauth/test_authorize.py",
    ],
    "idp/oauth/server.py": ["tests/oauth/test_token_endpoint.py", "tests/oauth/test_code_flow.py"],
    "idp/oauth/tokens.py": [
        "tests/oauth/test_token_endpoint.py",
        "tests/oauth/test_refresh.py",
        "tests/oauth/test_revocation_introspection.py",
        "tests/oauth/test_id_token.py",
    ],
    # idp/interaction
    "idp/interaction/flow.py": ["tests/interaction", "tests/oauth/test_authorize.py"],
    "idp/interaction/mfa.py": [
        "tests/interaction/test_totp.py",
        "tests/interaction/test_sms.py",
        "tests/interaction/test_step_up.py",
        "tests/interaction/test_recovery.py",
        "tests/interaction/test_self_service.py",
    ],
    "idp/interaction/outbox.py": ["tests/interaction/test_sms.py"],
    "idp/interaction/password_rules.py": [
        "tests/accounts",
        "tests/interaction/test_self_service.py",
    ],
    "idp/interaction/policies.py": ["tests/interaction/test_policies.py"],
    "idp/interaction/prompts.py": ["tests/oauth/test_authorize.py"],
    "idp/interaction/ratelimit.py": ["tests/interaction/test_lockout.py"],
    "idp/interaction/sessions.py": [
        "tests/interaction/test_login_sessions.py",
        "tests/oauth/test_logout.py",
    ],
    "idp/interaction/throttle.py": ["tests/interaction/test_lockout.py"],
    "idp/interaction/web.py": ["tests/interaction/test_login_sessions.py"],
    # keys/
    "keys/crypto.py": ["tests/keys/test_sql.py", "tests/test_rewrap.py"],
    "keys/pkcs11.py": ["tests/keys/test_pkcs11.py", "tests/keys/test_contract.py"],
    "keys/rotation.py": [
        "tests/keys/test_rotation.py",
        "tests/keys/test_contract.py",
        "tests/keys/test_sql.py",
    ],
    "keys/software.py": ["tests/keys/test_contract.py"],
    "keys/sql.py": ["tests/keys/test_sql.py", "tests/keys/test_contract.py"],
    "keys/static.py": ["tests/keys/test_static.py", "tests/keys/test_contract.py"],
    "keys/store.py": ["tests/keys/test_contract.py", "tests/keys/test_endpoints.py"],
}
#: What ``make mutation`` runs when no module is named (issue 14 item 12's minimum).
DEFAULT_MODULES = [
    "idp/audit.py",
    "keys/rotation.py",
    "idp/oauth/grants.py",
    "idp/oauth/authorize.py",
]

LOG_NAMES = frozenset({"log", "logger", "logging", "_log"})
IMPORT_TIME = "<import>"
COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


# ------------------------------------------------------------------ making mutants
@dataclass
class Site:
    """A place in the tree that can be mutated; ``apply`` changes a fresh copy of the tree."""

    node: ast.AST
    parent: ast.AST | None
    field: str
    index: int | None


@dataclass
class Mutant:
    number: int
    line: int
    end_line: int
    function: str
    kind: str
    before: str
    after: str
    status: str = "pending"
    tests_run: int = 0
    seconds: float = 0.0
    killed_by: str | None = None


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and isinstance(parent, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    )


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _is_literal_type(node: ast.AST) -> bool:
    """``Literal[...]`` only informs the type checker: changing it changes nothing at run time."""
    return isinstance(node, ast.Subscript) and ast.unparse(node.value) in (
        "Literal",
        "typing.Literal",
    )


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in LOG_NAMES
    )


def _walk(tree: ast.Module) -> Iterator[tuple[ast.AST, ast.AST | None, str, int | None, str]]:
    """Every node that may be mutated, in a fixed order, with where it hangs and its function."""

    def visit(
        node: ast.AST, parent: ast.AST | None, fld: str, idx: int | None, func: str
    ) -> Iterator[tuple[ast.AST, ast.AST | None, str, int | None, str]]:
        if _is_docstring(node, parent) or _is_type_checking(node) or _is_literal_type(node):
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name if func == "<module>" else f"{func}.{node.name}"
        elif isinstance(node, ast.ClassDef):
            func = node.name
        yield node, parent, fld, idx, func
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment"):
                continue
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        yield from visit(child, node, name, i, func)
            elif isinstance(value, ast.AST):
                yield from visit(value, node, name, None, func)

    yield from visit(tree, None, "", None, "<module>")


def _replace(parent: ast.AST, fld: str, idx: int | None, new: ast.AST) -> None:
    if idx is None:
        setattr(parent, fld, new)
    else:
        getattr(parent, fld)[idx] = new


Change = tuple[str, Callable[[ast.AST, ast.AST | None, str, int | None], ast.AST]]


def _changes(node: ast.AST, parent: ast.AST | None) -> list[Change]:
    """The mutations of one node: (kind, function making the change in place and returning
    the node that now stands there)."""
    out: list[Change] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAP.get(type(op))
            if swap is not None:

                def flip(n: ast.AST, *_: Any, i: int = i, swap: type[ast.cmpop] = swap) -> ast.AST:
                    assert isinstance(n, ast.Compare)
                    n.ops[i] = swap()
                    return n

                out.append(("compare", flip))
    elif isinstance(node, ast.BoolOp):

        def swap_bool(n: ast.AST, *_: Any) -> ast.AST:
            assert isinstance(n, ast.BoolOp)
            n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()
            return n

        out.append(("and/or", swap_bool))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):

        def drop_not(n: ast.AST, p: ast.AST | None, f: str, i: int | None) -> ast.AST:
            assert isinstance(n, ast.UnaryOp) and p is not None
            _replace(p, f, i, n.operand)
            return n.operand

        out.append(("drop not", drop_not))
    elif isinstance(node, ast.Constant) and not isinstance(parent, ast.JoinedStr):
        if isinstance(node.value, bool):

            def flip_bool(n: ast.AST, *_: Any) -> ast.AST:
                assert isinstance(n, ast.Constant)
                n.value = not n.value
                return n

            out.append(("bool", flip_bool))
        elif isinstance(node.value, int):

            def plus_one(n: ast.AST, *_: Any) -> ast.AST:
                assert isinstance(n, ast.Constant) and isinstance(n.value, int)
                n.value = n.value + 1
                return n

            out.append(("number", plus_one))
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):

        def swap_arith(n: ast.AST, *_: Any) -> ast.AST:
            assert isinstance(n, ast.BinOp)
            n.op = ast.Sub() if isinstance(n.op, ast.Add) else ast.Add()
            return n

        out.append(("+/-", swap_arith))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):

            def return_none(n: ast.AST, *_: Any) -> ast.AST:
                assert isinstance(n, ast.Return)
                n.value = ast.Constant(value=None)
                return n

            out.append(("return None", return_none))
    elif isinstance(node, ast.Raise) or (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and not _is_log_call(node.value)
    ):

        def remove(n: ast.AST, p: ast.AST | None, f: str, i: int | None) -> ast.AST:
            assert p is not None
            new = ast.Pass()
            _replace(p, f, i, new)
            return new

        out.append(("remove raise" if isinstance(node, ast.Raise) else "remove call", remove))
    if (
        isinstance(node, ast.Tuple | ast.List | ast.Set)
        and len(node.elts) >= 2
        and all(isinstance(e, ast.Constant) for e in node.elts)
    ):
        # Allow- and deny-lists of literals: drop one entry (e.g. a hashed field, a forbidden key).
        for i in range(len(node.elts)):

            def drop_entry(n: ast.AST, *_: Any, i: int = i) -> ast.AST:
                assert isinstance(n, ast.Tuple | ast.List | ast.Set)
                del n.elts[i]
                return n

            out.append((f"drop {ast.unparse(node.elts[i])}", drop_entry))
    if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert):
        test = node.test
        if not isinstance(test, ast.Compare | ast.BoolOp | ast.UnaryOp):

            def negate(n: ast.AST, *_: Any) -> ast.AST:
                assert isinstance(n, ast.If | ast.While | ast.IfExp | ast.Assert)
                n.test = ast.UnaryOp(op=ast.Not(), operand=n.test)
                return n.test

            out.append(("negate condition", negate))
    return out


def enumerate_mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    mutants: list[Mutant] = []
    for node, parent, _f, _i, func in _walk(tree):
        for kind, _change in _changes(node, parent):
            shown: Any = node.test if kind == "negate condition" else node  # type: ignore[attr-defined]
            mutants.append(
                Mutant(
                    number=len(mutants),
                    line=shown.lineno,
                    end_line=shown.end_lineno or shown.lineno,
                    function=func,
                    kind=kind,
                    before=ast.unparse(shown)[:90],
                    after="",
                )
            )
    return mutants


def mutated_source(source: str, number: int) -> tuple[str, str]:
    """The module with mutant ``number`` applied, and the text of the changed node."""
    tree = ast.parse(source)
    seen = 0
    for node, parent, fld, idx, _func in _walk(tree):
        for _kind, change in _changes(node, parent):
            if seen == number:
                standing = change(node, parent, fld, idx)
                ast.fix_missing_locations(tree)
                return ast.unparse(tree), ast.unparse(standing)[:90]
            seen += 1
    raise IndexError(number)


# ------------------------------------------------------------------ tracing the tests
def trace_main(target: str, out: str, pytest_args: list[str]) -> int:
    """Run pytest in this process, recording per test the lines of ``target`` it executes."""
    import pytest

    target = os.path.realpath(target)
    current: list[str] = [IMPORT_TIME]
    lines: dict[str, set[int]] = defaultdict(set)
    durations: dict[str, float] = {}

    def local(frame: Any, event: str, _arg: Any) -> Any:
        if event == "line":
            lines[current[0]].add(frame.f_lineno)
        return local

    def global_trace(frame: Any, event: str, _arg: Any) -> Any:
        if frame.f_code.co_filename == target:
            lines[current[0]].add(frame.f_lineno)
            return local
        return None

    class Recorder:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Iterator[None]:
            current[0] = item.nodeid
            started = time.monotonic()
            yield
            durations[item.nodeid] = time.monotonic() - started
            current[0] = IMPORT_TIME

    threading.settrace(global_trace)
    sys.settrace(global_trace)
    try:
        code = pytest.main(pytest_args, plugins=[Recorder()])
    finally:
        sys.settrace(None)
        threading.settrace(None)
    Path(out).write_text(
        json.dumps(
            {
                "exit": int(code),
                "lines": {k: sorted(v) for k, v in lines.items()},
                "durations": durations,
            }
        )
    )
    return int(code)


# ------------------------------------------------------------------ running
@dataclass
class Coverage:
    lines: dict[str, set[int]]
    durations: dict[str, float]
    tests: list[str] = field(default_factory=list)

    def tests_for(self, first: int, last: int) -> list[str]:
        wanted = set(range(first, last + 1))
        hit = [t for t in self.tests if self.lines.get(t, set()) & wanted]
        if hit:
            return hit
        if self.lines.get(IMPORT_TIME, set()) & wanted:
            return list(self.tests)
        return []


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "__pycache__",
        ".mutation",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "instance",
        ".demo",
    )
    for entry in ROOT.iterdir():
        if entry.name in {
            ".git",
            ".venv",
            ".mutation",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            "instance",
            ".demo",
        }:
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, dest / entry.name)


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(work)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _pytest(work: Path, args: list[str], timeout: float) -> tuple[str, str]:
    """Run the tests; return (status, first failing test)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *args,
    ]
    try:
        done = subprocess.run(
            cmd,
            cwd=work,
            env=_env(work),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "killed (timeout)", ""
    if done.returncode == 0:
        return "survived", ""
    if done.returncode in (1, 2):  # failures, or collection/import errors
        failed = next(
            (ln for ln in done.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))), ""
        )
        return "killed", failed[:200]
    return f"error (pytest exit {done.returncode})", done.stdout[-300:]


def run_module(module: str, args: argparse.Namespace) -> list[Mutant]:
    source = (ROOT / module).read_text()
    mutants = enumerate_mutants(source)
    if args.function:
        mutants = [
            m
            for m in mutants
            if m.function.split(".")[-1] in args.function or m.function in args.function
        ]
    if args.only:
        wanted = {int(n) for part in args.only for n in part.split(",")}
        mutants = [m for m in mutants if m.number in wanted]
    if args.list:
        for m in mutants:
            print(f"#{m.number} {module}:{m.line} [{m.function}] {m.kind}: {m.before}")
        return mutants
    tests = MODULE_TESTS[module]
    with tempfile.TemporaryDirectory(prefix="yitong-mutation-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        target = work / module
        trace_out = work / "trace.json"
        print(f"== {module}: {len(mutants)} mutants; tracing {' '.join(tests)}", flush=True)
        started = time.monotonic()
        for _attempt in range(2):  # a loaded machine can fail a race test once: retry once
            traced = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--trace",
                    str(target),
                    str(trace_out),
                    "--",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *tests,
                ],
                cwd=work,
                env=_env(work),
                capture_output=True,
                text=True,
                check=False,
            )
            if traced.returncode == 0:
                break
        if traced.returncode != 0:
            failures = [
                ln for ln in traced.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))
            ]
            raise SystemExit(
                f"{module}: the unmutated tests do not pass under the tracer "
                f"(exit {traced.returncode}):\n" + "\n".join(failures or [traced.stdout[-2000:]])
            )
        data = json.loads(trace_out.read_text())
        cov = Coverage(
            lines={k: set(v) for k, v in data["lines"].items()},
            durations=data["durations"],
            tests=sorted(data["durations"], key=data["durations"].get),
        )
        print(f"   traced {len(cov.tests)} tests in {time.monotonic() - started:.0f}s", flush=True)
        deadline = time.monotonic() + args.budget if args.budget else None
        order = list(mutants)
        if args.budget:
            # A run cut short by its budget should sample the whole module, not its first part.
            random.Random(0).shuffle(order)
        try:
            for m in order:
                if deadline is not None and time.monotonic() > deadline:
                    m.status = "not run (budget)"
                    continue
                chosen = cov.tests_for(m.line, m.end_line)
                if not chosen:
                    m.status = "not covered"
                    m.after = mutated_source(source, m.number)[1]
                    print(f"   #{m.number} L{m.line} {m.kind}: not covered", flush=True)
                    continue
                mutated, m.after = mutated_source(source, m.number)
                target.write_text(mutated)
                expected = sum(cov.durations[t] for t in chosen)
                t0 = time.monotonic()
                m.status, m.killed_by = _pytest(work, chosen, timeout=max(60.0, 5 * expected + 20))
                m.seconds = round(time.monotonic() - t0, 1)
                m.tests_run = len(chosen)
                print(
                    f"   #{m.number} L{m.line} {m.kind} `{m.before}` -> `{m.after}`: {m.status} ({m.seconds}s)",
                    flush=True,
                )
        finally:
            target.write_text(source)
    return mutants


def summarise(module: str, mutants: list[Mutant]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for m in mutants:
        counts[m.status.split(" (")[0] if m.status.startswith("killed") else m.status] += 1
    killed = counts.get("killed", 0)
    judged = killed + counts.get("survived", 0) + counts.get("not covered", 0)
    score = round(100 * killed / judged, 1) if judged else None
    return {"module": module, "counts": dict(counts), "score_percent": score}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--trace"]:
        target, out, _sep, *rest = argv[1:]
        return trace_main(target, out, rest)
    # A plain kill should still stop the running tests and clean the temporary copy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: {' '.join(DEFAULT_MODULES)}")
    parser.add_argument("--all", action="store_true", help="every module in MODULE_TESTS")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--function", action="append", help="only mutants in this function")
    parser.add_argument(
        "--only", action="append", help="only these mutant numbers (e.g. 3,17): re-check survivors"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0,
        help="seconds per module (0: none); with a budget the mutants run in a shuffled order",
    )
    args = parser.parse_args(argv)
    modules = list(MODULE_TESTS) if args.all else (args.modules or DEFAULT_MODULES)
    unknown = [m for m in modules if m not in MODULE_TESTS]
    if unknown:
        parser.error(f"no test subset for {unknown}: add it to MODULE_TESTS")
    report_dir = ROOT / ".mutation"
    summaries = []
    for module in modules:
        mutants = run_module(module, args)
        if args.list:
            continue
        summary = summarise(module, mutants)
        summaries.append(summary)
        report_dir.mkdir(exist_ok=True)
        (report_dir / (module.replace("/", "_") + ".json")).write_text(
            json.dumps(
                {**summary, "mutants": [asdict(m) for m in mutants]}, indent=1, ensure_ascii=False
            )
        )
        print(f"-- {module}: {summary['counts']} score {summary['score_percent']}%")
        for m in mutants:
            if m.status in ("survived", "not covered"):
                print(
                    f"   {m.status}: {module}:{m.line} [{m.function}] {m.kind}: `{m.before}` -> `{m.after}`"
                )
    for s in summaries:
        print(f"{s['module']}: score {s['score_percent']}% {s['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
