"""The ``calculate_output`` formula of a ``multi`` grader, parsed with ``ast`` and never exec'd.

A formula is arithmetic over the sub-graders' names: numbers, names, ``+ - * /``, powers written
``**`` or ``^`` (OpenAI's formulas use ``^``; it is read as ``**``, so it binds tighter than
``*`` and ``2 * 3 ^ 2`` is 18), unary minus and plus,
parentheses, and the functions ``min max abs floor ceil exp sqrt log`` (``log`` is the natural
logarithm). All arithmetic is in floats.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable, Mapping

from preftune.errors import GraderError

FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": lambda *xs: min(xs),
    "max": lambda *xs: max(xs),
    "abs": abs,
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_ARITY = {"abs": 1, "floor": 1, "ceil": 1, "exp": 1, "sqrt": 1, "log": 1}

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: _power(a, b),
}


def _power(base: float, exponent: float) -> float:
    result = base ** exponent
    if isinstance(result, complex):  # Python's float power of a negative base
        raise ValueError(f"{base:g} ** {exponent:g} is not a real number")
    return result


_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: lambda a: -a,
    ast.UAdd: lambda a: a,
}


def parse(formula: str, names: Iterable[str], where: str) -> ast.Expression:
    """The checked syntax tree of ``formula``; anything not allowed is a GraderError."""
    try:
        tree = ast.parse(_python_syntax(formula), mode="eval")
    except SyntaxError as e:
        raise GraderError(f"{where}: cannot parse {formula!r}: {e.msg}") from None
    known = set(names)
    unknown: list[str] = []
    for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "col_offset", -1)):
        if isinstance(node, ast.Call):
            _check_call(node, where)
        elif isinstance(node, ast.Name):
            if node.id not in known and node.id not in FUNCTIONS and node.id not in unknown:
                unknown.append(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise GraderError(f"{where}: {node.value!r} is not a number")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise GraderError(f"{where}: operator {_source(node, formula)!r} is not "
                                  "allowed; use + - * / ** ^")
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise GraderError(f"{where}: {_source(node, formula)!r} is not allowed")
        elif not isinstance(node, ast.Expression | ast.Load | ast.operator | ast.unaryop):
            raise GraderError(f"{where}: {_source(node, formula)!r} is not allowed in a "
                              "formula (numbers, grader names, + - * / ** ^, parentheses and "
                              f"{', '.join(FUNCTIONS)})")
    if unknown:
        raise GraderError(f"{where}: unknown name{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}; the graders are "
                          f"{', '.join(sorted(known)) or '(none)'}")
    return tree


def _check_call(node: ast.Call, where: str) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise GraderError(f"{where}: unknown function {name}; the functions are "
                          f"{', '.join(FUNCTIONS)}")
    if node.keywords or not node.args:
        raise GraderError(f"{where}: {node.func.id}() takes positional arguments only")
    arity = _ARITY.get(node.func.id)
    if arity is not None and len(node.args) != arity:
        raise GraderError(f"{where}: {node.func.id}() takes {arity} argument, "
                          f"got {len(node.args)}")


def _python_syntax(formula: str) -> str:
    """``^`` as power: Python's ``^`` (xor) would bind looser than ``*``."""
    return formula.strip().replace("^", "**")


def _source(node: ast.AST, formula: str) -> str:
    return ast.get_source_segment(_python_syntax(formula), node) or ast.unparse(node)


def evaluate(tree: ast.Expression, values: Mapping[str, float], where: str) -> float:
    """The value of a tree from ``parse`` with the graders' scores bound to their names."""
    try:
        return float(_eval(tree.body, values))
    except (ArithmeticError, ValueError) as e:  # division by zero, log(0), overflow
        raise GraderError(f"{where}: the formula failed: {e}") from None


def _eval(node: ast.expr, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return float(FUNCTIONS[node.func.id](*(_eval(a, values) for a in node.args)))
    raise AssertionError(f"parse() let {ast.dump(node)} through")
