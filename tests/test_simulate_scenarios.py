"""The scenario registry: discovery of scenario modules by name, lookups, errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dissector.simulate.scenarios as registry
from dissector.simulate import SimulationError
from dissector.simulate.scenario import CLOUD_ACTIONS, DEVICE_ACTIONS, Scenario, TcpSession

TCP_SCENARIOS = {
    "photon",
    "core",
    "multi-device",
    "photon-no-device-key",
    "ota-legacy",
    "ota-fast",
    "fail-unknown-device",
    "fail-wrong-server-key",
    "fail-bad-signature",
    "fail-wrong-device-key",
}

MODULE = """
from dissector.simulate.scenario import Scenario, Simulation

def _build(ctx):
    return Simulation([])

SCENARIOS = {{"{name}": Scenario(name="{name}", transport="udp", build=_build)}}
"""


@pytest.fixture
def extra_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The registry package with one more directory on its module path."""
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_cache", None)
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("dissector.simulate.scenarios.zz_"):
            del sys.modules[name]
    registry._cache = None


def test_every_tcp_scenario_is_registered_with_its_sessions() -> None:
    table = registry.all_scenarios()
    assert set(table) >= TCP_SCENARIOS
    assert registry.scenario_names() == sorted(table)
    for name in TCP_SCENARIOS:
        scenario = registry.get_scenario(name)
        assert isinstance(scenario, Scenario) and scenario.name == name
        assert scenario.transport == "tcp" and scenario.summary and scenario.shows
        assert scenario.sessions and all(isinstance(s, TcpSession) for s in scenario.sessions)
        for session in scenario.sessions:
            for st in session.steps:
                assert st.action in DEVICE_ACTIONS or st.action in CLOUD_ACTIONS


def test_a_new_module_is_discovered_by_name(extra_package: Path) -> None:
    (extra_package / "zz_extra.py").write_text(MODULE.format(name="zz-demo"))
    (extra_package / "_zz_private.py").write_text("raise RuntimeError('never imported')\n")
    table = registry.all_scenarios()
    assert "zz-demo" in table and set(table) >= TCP_SCENARIOS
    assert table["zz-demo"].transport == "udp"


def test_a_duplicate_name_is_an_error(extra_package: Path) -> None:
    (extra_package / "zz_dup.py").write_text(MODULE.format(name="photon"))
    with pytest.raises(SimulationError, match="defined in both"):
        registry.all_scenarios()


def test_a_module_without_scenarios_is_an_error(extra_package: Path) -> None:
    (extra_package / "zz_empty.py").write_text("X = 1\n")
    with pytest.raises(SimulationError, match="does not export SCENARIOS"):
        registry.all_scenarios()


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(SimulationError, match="photon"):
        registry.get_scenario("no-such-scenario")
