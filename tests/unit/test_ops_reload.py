"""Reload planning: which sources and sinks restart for a configuration change (no event loop)."""

from __future__ import annotations

from pathlib import Path

from gateway.config.settings import LoadedConfig, load_config
from gateway.ops.reload import ReloadPlan, effective_config, plan_reload, source_changes

BASE = """
site: {{name: {site}}}
sources:
  - {{type: simulated, name: rack-a, interval: {a_interval}}}
  - {{type: simulated, name: rack-b, interval: 1.0}}
{more}
store: {{path: {store}, commit_interval: {commit}}}
http: {{port: {port}}}
logging: {{level: {level}}}
"""


def load(tmp: Path, name: str, **kw: object) -> LoadedConfig:
    values: dict[str, object] = {
        "site": "s",
        "a_interval": 1.0,
        "more": "",
        "store": tmp / "s.db",
        "commit": 0.05,
        "port": 9108,
        "level": "info",
    }
    values.update(kw)
    p = tmp / name
    p.write_text(BASE.format(**values))
    return load_config(p)


def test_no_change_restarts_nothing(tmp_path: Path) -> None:
    plan = plan_reload(load(tmp_path, "a.yaml"), load(tmp_path, "b.yaml"))
    assert plan.empty and plan.describe() == []


def test_added_and_changed_sources_restart_the_others_keep_running(tmp_path: Path) -> None:
    old = load(tmp_path, "a.yaml")
    new = load(tmp_path, "b.yaml", a_interval=0.5, more="  - {type: simulated, name: rack-c}")
    plan = plan_reload(old, new)
    assert plan.stop_sources == {"rack-a"}
    assert plan.start_sources == {"rack-a", "rack-c"}
    assert plan.source_types == {"simulated"}
    assert plan.describe() == ["source rack-c added", "source rack-a restarted"]


def test_removed_and_disabled_sources_stop(tmp_path: Path) -> None:
    old = load(tmp_path, "a.yaml", more="  - {type: simulated, name: rack-c}")
    new = load(tmp_path, "b.yaml", more="  - {type: simulated, name: rack-c, enabled: false}")
    plan = plan_reload(old, new)
    assert plan.stop_sources == {"rack-c"} and not plan.start_sources
    assert plan.describe() == ["source rack-c removed"]


def test_site_name_restarts_every_source(tmp_path: Path) -> None:
    plan = plan_reload(load(tmp_path, "a.yaml"), load(tmp_path, "b.yaml", site="other"))
    assert plan.stop_sources == plan.start_sources == {"rack-a", "rack-b"}


def test_sinks_follow_their_entries(tmp_path: Path) -> None:
    sink = "sinks:\n  influx: {type: influxdb, url: 'http://127.0.0.1:1', token: t%s}\n"
    old = load(tmp_path, "a.yaml", more=sink % "1")
    same = load(tmp_path, "b.yaml", more=sink % "1")
    changed = load(tmp_path, "c.yaml", more=sink % "2")
    assert not plan_reload(old, same).start_sinks
    plan = plan_reload(old, changed)
    assert plan.stop_sinks == plan.start_sinks == {"influx"}
    assert "sink influx restarted" in plan.describe()
    assert "t2" not in " ".join(plan.describe())  # a changed secret is never shown


def test_store_change_needs_a_restart_and_keeps_the_running_store(tmp_path: Path) -> None:
    old = load(tmp_path, "a.yaml")
    new = load(tmp_path, "b.yaml", commit=0.5, level="debug", port=9200)
    plan = plan_reload(old, new)
    assert plan.needs_restart == ("store",)
    assert plan.sections == ("http", "logging")
    assert "store changed: needs a restart (running values kept)" in plan.describe()
    eff = effective_config(old, new)
    assert eff.config.store.commit_interval == 0.05  # the running value
    assert eff.config.http.port == 9200 and eff.config.logging.level == "debug"  # applied


def test_source_changes_named_and_shared_sources() -> None:
    plan = ReloadPlan(
        stop_sources=frozenset({"a"}), start_sources=frozenset({"a", "c"}), source_types=frozenset({"modbus"})
    )
    running = {"a": "modbus", "b": "modbus", "bus:10.0.0.1:502": "modbus", "can0": "can"}
    built = {"modbus": ["a", "b", "c", "bus:10.0.0.1:502"]}
    stop, start = source_changes(plan, {"a", "b", "can0"}, {"a", "b", "c", "can0"}, running, built)
    # a changed, c is new, the shared endpoint restarts with them; b and the CAN bus keep running.
    assert stop == {"a", "bus:10.0.0.1:502"}
    assert start == {"a", "c", "bus:10.0.0.1:502"}


def test_alarm_rules_change_needs_a_restart(tmp_path: Path) -> None:
    old = load(tmp_path, "a.yaml")
    new = load(tmp_path, "b.yaml", more="alarms: {enabled: false}")
    plan = plan_reload(old, new)
    assert plan.needs_restart == ("alarms",) and plan.empty
    assert effective_config(old, new).config.alarms == old.config.alarms


def test_a_changed_dbc_file_restarts_the_sources_of_its_profile(tmp_path: Path) -> None:
    """The DBC file a CAN profile names is part of what a reload compares (its content, not its name)."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "profiles").mkdir()
    (tmp_path / "dbc").mkdir()
    shutil.copy(root / "config" / "profiles" / "can-example-rack.yaml", tmp_path / "profiles")
    shutil.copy(root / "dbc" / "can-example-rack.dbc", tmp_path / "dbc")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "site: {name: s, profiles_dir: profiles, dbc_dir: dbc}\n"
        "sources:\n"
        "  - {type: can, name: rack-a, profile: can-example-rack, interface: virtual, channel: c0}\n"
        "  - {type: simulated, name: sim}\n"
        f"store: {{path: {tmp_path / 's.db'}}}\n"
    )
    old = load_config(cfg)
    assert plan_reload(old, load_config(cfg)).empty  # nothing changed
    dbc = tmp_path / "dbc" / "can-example-rack.dbc"
    dbc.write_text(dbc.read_text() + '\nCM_ "changed on disk";\n')
    plan = plan_reload(old, load_config(cfg))
    assert plan.stop_sources == plan.start_sources == frozenset({"rack-a"})  # the simulated rack keeps running
