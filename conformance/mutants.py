"""Mutants of the reference server: one small, realistic mistake each.

The operators are gearspec's own, over Python's ``ast``.  mutmut and cosmic-ray
judge a mutant by a test command run in a copy of the tree; here the "tests"
are the catalog played in process (the ``inproc`` target runs all of it in
about three seconds), and a mutant is loaded in place of its module by an
import hook, so nothing on disk changes and mutants run side by side.

Each operator is one line of ``OPERATORS``: which node it applies to and the
nodes it turns it into.  A mutant is the module's source with one node's text
replaced by the mutated node's (``ast.unparse``); its id names the module, the
position and the operator, and its diff is the one changed line.

Left alone, because a mutant there says nothing about the protocol: docstrings,
annotations, and calls to a logger (``.debug``, ``.info``, ...).

This module imports nothing of the server: ``play`` installs the hook before the
server is first imported, in a process of the mutant's own.
"""

from __future__ import annotations

import ast
import difflib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SWAPS: dict[type[ast.AST], type[ast.AST]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt,
    ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.And: ast.Or, ast.Or: ast.And,
    ast.Add: ast.Sub, ast.Sub: ast.Add,
}
SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">",
           ast.LtE: "<=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is",
           ast.IsNot: "is not", ast.And: "and", ast.Or: "or", ast.Add: "+", ast.Sub: "-"}
LOGGING = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _compare(node: ast.Compare) -> Iterator[tuple[str, ast.AST]]:
    for i, op in enumerate(node.ops):
        if type(op) in SWAPS:
            ops = list(node.ops)
            ops[i] = SWAPS[type(op)]()
            which = f" ({i + 1} of {len(ops)})" if len(ops) > 1 else ""  # a < b < c
            yield (f"{SYMBOLS[type(op)]} -> {SYMBOLS[type(ops[i])]}{which}",
                   ast.Compare(node.left, ops, node.comparators))


def _boolean(node: ast.BoolOp) -> Iterator[tuple[str, ast.AST]]:
    swapped = SWAPS[type(node.op)]()
    yield f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[type(swapped)]}", ast.BoolOp(swapped,
                                                                              node.values)


def _arithmetic(node: ast.BinOp) -> Iterator[tuple[str, ast.AST]]:
    if type(node.op) in SWAPS:
        swapped = SWAPS[type(node.op)]()
        yield (f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[type(swapped)]}",
               ast.BinOp(node.left, swapped, node.right))


def _negation(node: ast.UnaryOp) -> Iterator[tuple[str, ast.AST]]:
    if isinstance(node.op, ast.Not):
        yield "not dropped", node.operand


def _constant(node: ast.Constant) -> Iterator[tuple[str, ast.AST]]:
    value = node.value
    if isinstance(value, bool):
        yield f"{value} -> {not value}", ast.Constant(not value)
    elif isinstance(value, int):
        yield f"{value} -> {value + 1}", ast.Constant(value + 1)


def _call_statement(node: ast.Expr) -> Iterator[tuple[str, ast.AST]]:
    call = node.value
    if isinstance(call, ast.Await):
        call = call.value
    if isinstance(call, ast.Call) and not (isinstance(call.func, ast.Attribute)
                                           and call.func.attr in LOGGING):
        yield "call dropped", ast.Pass()


#: node type → what it may become: (operator's name, the mutated node), as many as apply.
OPERATORS: dict[type[ast.AST], Callable[[Any], Iterator[tuple[str, ast.AST]]]] = {
    ast.Compare: _compare, ast.BoolOp: _boolean, ast.BinOp: _arithmetic,
    ast.UnaryOp: _negation, ast.Constant: _constant, ast.Expr: _call_statement,
}


@dataclass(frozen=True)
class Mutant:
    """One node of one module, replaced."""

    module: str  # its path from the project root
    line: int
    col: int
    end_line: int
    end_col: int
    operator: str
    replacement: str

    @property
    def id(self) -> str:
        """Module, span and operator: ``a + b + c`` holds two ``+`` that start at one
        place, so the start alone would not tell them apart."""
        return (f"{self.module}:{self.line}:{self.col}-{self.end_line}:{self.end_col}:"
                f"{self.operator}")

    @property
    def name(self) -> str:
        """The module's import name."""
        return self.module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")

    def source(self, original: str) -> str:
        lines = original.splitlines(keepends=True)
        first, last = lines[self.line - 1], lines[self.end_line - 1]
        # Columns are UTF-8 byte offsets.
        head = first.encode()[:self.col].decode()
        tail = last.encode()[self.end_col:].decode()
        return "".join([*lines[:self.line - 1], head, self.replacement, tail,
                        *lines[self.end_line:]])

    def diff(self, original: str) -> str:
        return "".join(difflib.unified_diff(
            original.splitlines(keepends=True), self.source(original).splitlines(keepends=True),
            f"a/{self.module}", f"b/{self.module}", n=0))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _skipped(tree: ast.AST) -> set[int]:
    """Nodes no operator touches: docstrings, annotations and logging calls, with what
    is inside them."""
    skip: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.append(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            skip.append(node.returns)
        if isinstance(node, ast.arg) and node.annotation:
            skip.append(node.annotation)
        if isinstance(node, ast.AnnAssign):
            skip.append(node.annotation)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in LOGGING:
            skip.append(node)
    return {id(inner) for outer in skip for inner in ast.walk(outer)}


def mutants_of(path: Path) -> list[Mutant]:
    """Every mutant of one module, in source order."""
    where = path.resolve()
    module = str(where.relative_to(ROOT)) if ROOT in where.parents else str(where)
    tree = ast.parse(path.read_text(), str(path))
    skipped = _skipped(tree)
    found: list[Mutant] = []
    for node in ast.walk(tree):
        make = OPERATORS.get(type(node))
        if make is None or id(node) in skipped or not hasattr(node, "end_lineno"):
            continue
        for operator, replacement in make(node):
            text = ast.unparse(replacement)
            found.append(Mutant(module, node.lineno, node.col_offset, node.end_lineno or 0,
                                node.end_col_offset or 0, operator,
                                f"({text})" if isinstance(node, ast.expr) and not
                                isinstance(replacement, (ast.Constant, ast.Name)) else text))
    return sorted(found, key=lambda m: (m.line, m.col, m.operator))


class _MutantLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the mutant's source for its module; every other import as usual."""

    def __init__(self, mutant: Mutant) -> None:
        self.mutant = mutant
        self.path = ROOT / mutant.module

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.mutant.name:
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.path, loader=self,
            submodule_search_locations=[str(self.path.parent)]
            if self.path.name == "__init__.py" else None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        code = compile(self.mutant.source(self.path.read_text()), str(self.path), "exec")
        exec(code, module.__dict__)  # the mutant: our own source, one node changed


def install(mutant: Mutant) -> None:
    """From now on, importing the mutant's module gives the mutant."""
    if mutant.name in sys.modules:
        raise RuntimeError(f"{mutant.name} is imported already: the mutant would not be used")
    sys.meta_path.insert(0, _MutantLoader(mutant))
