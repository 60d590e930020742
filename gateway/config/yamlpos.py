"""YAML loading that keeps line and column numbers, and maps validation paths back to them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from gateway.config.yamllimits import DEFAULT_LIMITS, BoundedComposer, YamlLimitError, YamlLimits
from gateway.errors import ConfigError, Problem


def load_yaml(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """Parse a YAML file into ruamel's commented containers (which remember positions), within `limits`."""
    try:
        with path.open("rb") as file:
            raw = file.read(limits.max_bytes + 1)  # never more than the limit (a FIFO, /dev/zero)
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(Problem(str(path), 0, 0, f"cannot read file: {exc.strerror}")) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(str(path), 0, 0, f"not UTF-8 text: {exc}")) from exc
    return load_yaml_text(text, str(path), limits)


def load_yaml_text(text: str, name: str, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    if len(text) > limits.max_bytes or len(text.encode("utf-8")) > limits.max_bytes:
        raise ConfigError(Problem(name, 0, 0, f"YAML limit: the file is larger than {limits.max_bytes:,} bytes"))
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    yaml.Composer = BoundedComposer
    yaml.gateway_limits = limits  # type: ignore[attr-defined]  # read by BoundedComposer
    try:
        return yaml.load(text)
    except YamlLimitError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        raise ConfigError(Problem(name, line, col, f"YAML limit: {exc.problem}")) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(Problem(name, line, col, f"YAML syntax error: {what}")) from exc
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
        raise ConfigError(Problem(name, 0, 0, f"YAML error: {exc}")) from exc


def position(node: Any, loc: Sequence[int | str]) -> tuple[int, int]:
    """Best 1-based (line, col) for a validation `loc` path inside a loaded YAML tree.

    Path elements that are not keys of the current mapping (pydantic adds union tags such as
    `modbus` or `function-after[...]`) are skipped; the deepest node found gives the position.
    """
    line, col = _node_pos(node)
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            kl, kc = node.lc.key(part)
            line, col = kl + 1, kc + 1
            child = node[part]
            if isinstance(child, CommentedMap | CommentedSeq) and len(child):
                line, col = _node_pos(child)
            node = child
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            il, ic = node.lc.item(part)
            line, col = il + 1, ic + 1
            node = node[part]
        # else: a union tag or a missing key; stay on the current node
    return line, col


def _node_pos(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return 1, 1
    return lc.line + 1, lc.col + 1


def to_plain(node: Any) -> Any:
    """Commented containers to plain dicts and lists (for pydantic and for JSON)."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node
