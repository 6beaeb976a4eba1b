"""Schedules written as text, as configs and the command line give them.

``parse_schedule("Cosine(value=0.001, total_steps=5000)")`` rebuilds the schedule that
``repr`` printed: the text may only call schedule classes with literal arguments (numbers,
strings, booleans, lists, nested schedules), so nothing else in it can run.
"""

from __future__ import annotations

import ast
import difflib
from typing import Any

from cadence.schedule.base import Schedule


def parse_schedule(text: str, names: dict[str, type[Schedule]] | None = None) -> Schedule:
    """The schedule that ``text`` spells, e.g. ``"Piecewise([(0, 0.0), (100, 1e-3)])"``.

    ``names`` are the classes the text may call (default: every schedule of
    :mod:`cadence.schedule`). Errors name the text and what is wrong in it.
    """
    if names is None:
        import cadence.schedule as schedules

        names = {name: getattr(schedules, name) for name in schedules.__all__
                 if isinstance(getattr(schedules, name), type) and issubclass(getattr(schedules, name), Schedule)
                 and getattr(schedules, name) is not Schedule}
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"schedule {text!r} is not valid: {e.msg}; expected e.g. 'Cosine(1e-3, 5000)'") from None
    value = _evaluate(tree.body, text, names)
    if not isinstance(value, Schedule):
        raise ValueError(f"schedule {text!r} is a {type(value).__name__}, not a schedule; expected e.g. "
                         f"'Cosine(1e-3, 5000)' (one of: {', '.join(sorted(names))})")
    return value


def _evaluate(node: ast.AST, text: str, names: dict[str, type[Schedule]]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand, text, names)
        if isinstance(operand, (int, float)):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_evaluate(item, text, names) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        cls = names.get(node.func.id)
        if cls is None:
            near = difflib.get_close_matches(node.func.id, names, n=1)
            raise ValueError(f"schedule {text!r}: unknown schedule {node.func.id!r}"
                             f"{f'; did you mean {near[0]!r}?' if near else '.'} Known: {', '.join(sorted(names))}")
        args = [_evaluate(a, text, names) for a in node.args]
        kwargs = {k.arg: _evaluate(k.value, text, names) for k in node.keywords if k.arg is not None}
        try:
            return cls(*args, **kwargs)
        except TypeError as e:
            raise ValueError(f"schedule {text!r}: {e}") from None
    raise ValueError(f"schedule {text!r}: {ast.unparse(node)!r} is not allowed; only schedule calls with literal "
                     f"arguments are")
