"""Every module-level cache of gateway/ has a bound: the DBC parse cache keeps at most DBC_CACHE_SIZE
versions however often files change, the secret-file warnings at most WARNED_FILES_MAX files, and no
module keeps an unbounded memo (`@cache`, `lru_cache(maxsize=None)`, an empty dict filled later
without a stated bound)."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest

from gateway.config import base as configbase
from gateway.lru import LruCache
from gateway.sources.can import dbcload
from tests.can_support import BMS_DBC

ROOT = Path(__file__).resolve().parents[2] / "gateway"


def test_lru_cache_drops_the_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" used: "b" is now the oldest
    cache.put("c", 3)
    assert len(cache) == 2 and "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.pop("a") == 1 and cache.pop("a") is None and len(cache) == 1
    with pytest.raises(ValueError):
        LruCache(0)


def test_the_dbc_cache_stays_bounded_while_files_change(tmp_path: Path) -> None:
    dbcload._CACHE.clear()
    files = [tmp_path / f"bms{i}.dbc" for i in range(3)]
    for f in files:
        shutil.copy(BMS_DBC, f)
    loads = 0
    for version in range(3 * dbcload.DBC_CACHE_SIZE):  # every load sees a new version of a file (its mtime)
        f = files[version % len(files)]
        os.utime(f, ns=(10**18 + version, 10**18 + version))
        first = dbcload.load_dbc(f)
        assert dbcload.load_dbc(f) is first  # the same version again: the cached parse
        loads += 1
        assert len(dbcload._CACHE) <= dbcload.DBC_CACHE_SIZE
    assert loads > dbcload.DBC_CACHE_SIZE and len(dbcload._CACHE) == dbcload.DBC_CACHE_SIZE
    dbcload._CACHE.clear()


def test_secret_file_warnings_are_bounded(tmp_path: Path) -> None:
    configbase._warned.clear()
    for i in range(configbase.WARNED_FILES_MAX + 10):
        secret = tmp_path / f"s{i}"
        secret.write_text("x")
        secret.chmod(0o644)
        configbase.warn_if_exposed(secret)
    assert len(configbase._warned) == configbase.WARNED_FILES_MAX
    configbase._warned.clear()


def _is_empty_container(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Dict):
        return not value.keys
    if not isinstance(value, ast.Call) or value.keywords:
        return False
    name = ast.unparse(value.func)
    return (name in ("dict", "set", "OrderedDict") and not value.args) or (
        name == "defaultdict" and len(value.args) <= 1
    )


def unbounded_memos(source: str) -> list[str]:
    """`@cache`, `@lru_cache(maxsize=None)`, and module-level empty containers whose line (or the two
    lines above it) does not say why they are bounded."""
    lines = source.splitlines()
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                text = ast.unparse(dec)
                if text in ("cache", "functools.cache") or "maxsize=None" in text:
                    found.append(f"@{text} on {node.name} (line {dec.lineno})")
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and _is_empty_container(stmt.value):
            said = " ".join(lines[max(0, stmt.lineno - 3) : stmt.lineno]).lower()
            if "bounded" not in said and "never written" not in said:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
                found.append(f"module-level {ast.unparse(target)} (line {stmt.lineno})")
    return found


def test_the_walk_finds_unbounded_memos() -> None:
    src = (
        "from functools import cache\n_SEEN: dict[int, int] = {}\n@cache\ndef f(x): return x\n"
        "OK = {}  # bounded: one per rack\n"
    )
    assert unbounded_memos(src) == ["@cache on f (line 3)", "module-level _SEEN (line 2)"]


def test_gateway_keeps_no_unbounded_module_level_cache() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for what in unbounded_memos(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(ROOT.parent)}: {what}")
    assert not offenders, "caches without a bound (use gateway.lru.LruCache, or say why it is bounded):\n" + "\n".join(
        offenders
    )
