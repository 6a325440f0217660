"""The scenario registry: every module of this package that exports ``SCENARIOS``.

Each module ``dissector/simulate/scenarios/<name>.py`` (not starting with ``_``) exports
``SCENARIOS: dict[str, Scenario]``; the registry imports them by name
(:func:`pkgutil.iter_modules`) the first time it is asked, so adding a module (e.g.
``dtls_handshake.py``) adds its scenarios without editing this file. Scenario names must be
unique across modules.

``scenario_names()`` lists them; ``get_scenario(name)`` returns one; ``all_scenarios()``
returns the whole mapping (sorted by name). Problems raise :class:`SimulationError`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from dissector.simulate.errors import SimulationError
from dissector.simulate.scenario import Scenario

__all__ = ["all_scenarios", "get_scenario", "scenario_names"]

_cache: dict[str, Scenario] | None = None


def _discover() -> dict[str, Scenario]:
    found: dict[str, tuple[str, Scenario]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        table = getattr(module, "SCENARIOS", None)
        if not isinstance(table, Mapping):
            raise SimulationError(f"scenario module {info.name} does not export SCENARIOS")
        for name, scenario in table.items():
            if not isinstance(scenario, Scenario) or scenario.name != name:
                raise SimulationError(f"{info.name}.SCENARIOS[{name!r}] is not a Scenario named so")
            if name in found:
                raise SimulationError(
                    f"scenario {name!r} defined in both {found[name][0]} and {info.name}"
                )
            found[name] = (info.name, scenario)
    return {name: found[name][1] for name in sorted(found)}


def all_scenarios() -> dict[str, Scenario]:
    """Every registered scenario by name (discovered once, then cached)."""
    global _cache
    if _cache is None:
        _cache = _discover()
    return dict(_cache)


def scenario_names() -> list[str]:
    """The registered scenario names, sorted."""
    return list(all_scenarios())


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; :class:`SimulationError` names the known ones if absent."""
    table = all_scenarios()
    try:
        return table[name]
    except KeyError:
        raise SimulationError(
            f"unknown scenario {name!r} (known: {', '.join(table) or 'none'})"
        ) from None
