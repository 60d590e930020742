"""Rules over the gateway's source, checked by walking gateway/**/*.py (beside the import-cycle test):
no source text is run (`exec`, `eval`, `compile` of source), and no module is over MAX_MODULE_LINES."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "gateway"
RUNS_SOURCE = frozenset({"exec", "eval", "compile"})
MAX_MODULE_LINES = 400


def source_runners(source: str) -> list[str]:
    """Calls of the builtins that run source text: `exec(...)`, `eval(...)`, `compile(...)`, also as
    `builtins.exec(...)`. Methods of that name (`re.compile`, a rule's `compile`) are not them."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in RUNS_SOURCE:
            found.append(f"{func.id}() at line {node.lineno}")
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in RUNS_SOURCE
            and isinstance(func.value, ast.Name)
            and func.value.id in ("builtins", "__builtins__")
        ):
            found.append(f"{func.value.id}.{func.attr}() at line {node.lineno}")
    return found


def test_the_walk_finds_source_text_being_run() -> None:
    src = 'import builtins, re\nexec("x = 1")\ny = eval("1")\nc = compile("1", "<s>", "eval")\nbuiltins.exec("")\n'
    src += 're.compile("a")\nrule.compile(table)\n'
    assert source_runners(src) == [
        "exec() at line 2",
        "eval() at line 3",
        "compile() at line 4",
        "builtins.exec() at line 5",
    ]


def test_gateway_runs_no_source_text() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for call in source_runners(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(ROOT.parent)}: {call}")
    assert not offenders, "source text run as code (build data, not code):\n" + "\n".join(offenders)


def test_no_gateway_module_is_over_the_line_limit() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in sorted(ROOT.rglob("*.py"))}
    assert len(sizes) > 50  # the walk saw the package
    by_size = sorted(sizes.items(), key=lambda kv: -kv[1])
    offenders = [f"{p.relative_to(ROOT.parent)}: {n} lines" for p, n in by_size if n > MAX_MODULE_LINES]
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines (split them by responsibility):\n" + "\n".join(
        offenders
    )
