"""The YAML loader's bounds: size in bytes, nodes with every alias expanded, aliases, nesting (no event loop).

Every YAML file the gateway reads (configuration, profiles, alarm rule sets) goes through `load_yaml`,
so these are the bounds of all of them; each refusal names file:line:col.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.profiles import load_profile
from gateway.config.yamllimits import DEFAULT_LIMITS, YamlLimits
from gateway.config.yamlpos import load_yaml, load_yaml_text, to_plain
from gateway.errors import ConfigError
from tests.support.manual import manual_text


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """The classic "billion laughs": each level is `width` aliases of the one before."""
    lines = ["site: {name: bomb}", "lol:", "  l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def refusal(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(ConfigError) as err:
        load_yaml_text(text, "f.yaml", limits)
    (problem,) = err.value.problems
    return str(problem)


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit() -> None:
    # l0 holds 10 nodes, each level 1 + 9x the one before: l5 (line 8) passes 100,000 at its second alias.
    message = refusal(alias_bomb())
    assert message.startswith("f.yaml:8:12: YAML limit: this alias makes the document larger than 100,000 nodes")
    assert "billion laughs" in message


def test_a_merge_key_bomb_is_refused_too() -> None:
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 12):
        lines.append(f"m{i}: &m{i} {{x: [*m{i - 1}, *m{i - 1}, *m{i - 1}, *m{i - 1}], <<: *m{i - 1}}}")
    assert "YAML limit: this alias makes the document larger" in refusal("\n".join(lines))


def test_aliases_within_the_limits_load_as_before() -> None:
    text = "base: &base {scale: 0.1, unit: V}\nregs:\n  - <<: *base\n    address: 1\n  - [*base, *base]\n"
    assert to_plain(load_yaml_text(text, "f.yaml")) == {
        "base": {"scale": 0.1, "unit": "V"},
        "regs": [{"scale": 0.1, "unit": "V", "address": 1}, [{"scale": 0.1, "unit": "V"}] * 2],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a\n  b: *a\n", "f.yaml:2:6: YAML limit: an alias inside the node it refers to"),
        ("x: " + "[" * 40 + "]" * 40 + "\n", "f.yaml:1:35: YAML limit: nested deeper than 32 levels"),
        ("a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: " + "[" * 15 + "*a" + "]" * 15 + "\n",
         "f.yaml:2:19: YAML limit: this alias nests the document deeper than 32 levels"),
        ("a: &a 1\nb: [" + ", ".join(["*a"] * 10_001) + "]\n", "f.yaml:2:"),
    ],
    ids=["recursive", "deep", "deep-through-alias", "many-aliases"],
)  # fmt: skip
def test_structure_limits_name_the_place(text: str, expected: str) -> None:
    assert refusal(text).startswith(expected)


def test_many_aliases_message() -> None:
    assert "more than 10,000 aliases" in refusal("a: &a 1\nb: [" + ", ".join(["*a"] * 10_001) + "]\n")


def test_node_count_without_aliases_is_bounded_too() -> None:
    small = YamlLimits(max_nodes=50)
    # The root mapping, x, the list and 47 items make 50 nodes: the 48th item (column 146) is one too many.
    assert refusal("x: [" + ", ".join(["1"] * 60) + "]\n", small) == (
        "f.yaml:1:146: YAML limit: the document has more than 50 nodes"
    )
    assert to_plain(load_yaml_text("x: [" + ", ".join(["1"] * 40) + "]\n", "f.yaml", small)) == {"x": [1] * 40}


def test_each_document_of_a_file_counts_from_zero() -> None:
    # Two loads with the same composer class never share counts (a reload reads the file again).
    text = alias_bomb(levels=4)  # l3: 1 + 9 * 820 nodes, well within the limit
    for _ in range(3):
        assert len(to_plain(load_yaml_text(text, "f.yaml"))["lol"]["l3"]) == 9


def test_file_size_is_bounded_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * DEFAULT_LIMITS.max_bytes + "\nsite: {name: x}\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(big)
    assert str(err.value) == f"{big}: YAML limit: the file is larger than 1,048,576 bytes"
    # Multi-byte characters count as bytes.
    assert "larger than 10 bytes" in refusal("a: ééééé\n", YamlLimits(max_bytes=10))


def test_a_profile_goes_through_the_same_limits(tmp_path: Path) -> None:
    profile = tmp_path / "bomb-rack.yaml"
    profile.write_text(alias_bomb().replace("site: {name: bomb}\n", "kind: modbus\n"))
    with pytest.raises(ConfigError) as err:
        load_profile(profile)
    assert str(err.value).startswith(f"{profile}:8:12: YAML limit: this alias makes the document larger")


def test_the_manual_gives_the_limits() -> None:
    readme = manual_text()
    table = readme[readme.index("**Limits of a YAML file.**") :]
    table = table[: table.index("\n\n", table.index("| limit |"))]
    limits = DEFAULT_LIMITS
    rows = {
        "size": f"{limits.max_bytes:,} bytes",
        "nodes": f"| {limits.max_nodes:,} |",
        "alias references": f"| {limits.max_aliases:,} |",
        "nesting": f"| {limits.max_depth} levels |",
    }
    for row, value in rows.items():
        line = next(x for x in table.splitlines() if x.startswith(f"| {row}"))
        assert value in line, line
