"""Bounds on a YAML document: its size in bytes, its nodes with every alias expanded, its aliases, its nesting.

A "billion laughs" file is a few hundred bytes that composes into a small graph of shared nodes; the
copy that validation works on expands every alias again, and ten levels of nine aliases make a
billion nodes (the gateway hung, its memory growing, and a reload left the work running). The
composer below counts, as it composes, how many nodes the document has with every alias expanded
and how deep it nests, and stops at the first node or alias past a limit: loading is finite and small
whatever the file says, so an abandoned reload has nothing left to run. The error names the place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """What one YAML file (a configuration, a profile, a rule set) may hold."""

    max_bytes: int = 1_048_576  # the file's size (1 MiB; the largest example profile is 5 kB)
    max_nodes: int = 100_000  # keys, values and items, each alias counted as the nodes it stands for
    max_aliases: int = 10_000  # alias references (*name, also in `<<: *name`)
    max_depth: int = 32  # nesting of mappings and sequences, through aliases too


DEFAULT_LIMITS = YamlLimits()


class YamlLimitError(MarkedYAMLError):
    """A document past one of its limits; `problem_mark` is where it went past."""


@dataclass(frozen=True, slots=True)
class Expansion:
    """What an anchored node stands for wherever an alias repeats it."""

    nodes: int  # the node and everything under it, aliases expanded
    height: int  # 1 for a scalar, 1 + the deepest child for a collection


class BoundedComposer(Composer):
    """ruamel's composer, counting expanded nodes, aliases and depth per document (limits from the loader)."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.limits: YamlLimits = getattr(loader, "gateway_limits", DEFAULT_LIMITS)
        self._reset()

    def _reset(self) -> None:
        self._nodes = 0
        self._aliases = 0
        self._deepest = 0
        self._expansions: dict[int, Expansion] = {}  # id(anchored node) -> its expansion

    def compose_document(self: Any) -> Any:
        self._reset()
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)  # ruamel names an undefined alias
            self._alias(node, event.start_mark)
            return node
        depth = self.depth + 1
        if depth > self.limits.max_depth:
            self._fail(f"nested deeper than {self.limits.max_depth} levels", event.start_mark)
        self._count(1, event.start_mark, "the document has more than {limit:,} nodes")
        self._deepest = max(self._deepest, depth)
        if event.anchor is None:
            return super().compose_node(parent, index)
        nodes_before, deepest_outside = self._nodes - 1, self._deepest
        self._deepest = depth
        node = super().compose_node(parent, index)
        self._expansions[id(node)] = Expansion(self._nodes - nodes_before, self._deepest - depth + 1)
        self._deepest = max(deepest_outside, self._deepest)
        return node

    def _alias(self, node: Any, mark: Any) -> None:
        self._aliases += 1
        if self._aliases > self.limits.max_aliases:
            self._fail(f"more than {self.limits.max_aliases:,} aliases", mark)
        expansion = self._expansions.get(id(node))
        if expansion is None:
            self._fail("an alias inside the node it refers to (a recursive structure)", mark)
            return
        self._count(
            expansion.nodes,
            mark,
            "this alias makes the document larger than {limit:,} nodes once every alias is expanded "
            "(aliases of aliases: a 'billion laughs' document?)",
        )
        deepest = self.depth + expansion.height
        if deepest > self.limits.max_depth:
            self._fail(f"this alias nests the document deeper than {self.limits.max_depth} levels", mark)
        self._deepest = max(self._deepest, deepest)

    def _count(self, nodes: int, mark: Any, message: str) -> None:
        self._nodes += nodes
        if self._nodes > self.limits.max_nodes:
            self._fail(message.format(limit=self.limits.max_nodes), mark)

    @staticmethod
    def _fail(problem: str, mark: Any) -> None:
        raise YamlLimitError(None, None, problem, mark)
