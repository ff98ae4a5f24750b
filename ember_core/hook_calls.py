"""Call a plugin hook one plugin at a time: each call timed and what it raises caught, so one plugin hides no other.

pluggy's `manager.hook.NAME(...)` calls every plugin in one go: the first exception ends the call and
loses the other plugins' answers, and nobody learns which plugin was slow. Python cannot interrupt a
running function, so a slow or hanging hook is reported (with its time), never stopped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pluggy


@dataclass(frozen=True)
class HookCall:
    """What one plugin's hook implementation did: its results (pluggy drops None), or the exception it raised."""

    plugin: str
    results: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    seconds: float = 0.0


def plugins_with(manager: pluggy.PluginManager, hook_name: str) -> list[Any]:
    """The plugins implementing `hook_name`, each once, in the order pluggy keeps them (registration order)."""
    plugins: list[Any] = []
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        if all(impl.plugin is not known for known in plugins):
            plugins.append(impl.plugin)
    return plugins


def call_one(manager: pluggy.PluginManager, hook_name: str, plugin: Any, **kwargs: Any) -> HookCall:
    """Call `plugin`'s implementation of `hook_name` alone; any exception but KeyboardInterrupt is caught and returned."""
    others = [other for other in manager.get_plugins() if other is not plugin]
    caller = manager.subset_hook_caller(hook_name, remove_plugins=others)
    name = manager.get_name(plugin) or type(plugin).__name__
    start = time.perf_counter()
    try:
        results = caller(**kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # SystemExit too: a plugin must not end the node or the CLI
        return HookCall(name, error=err, seconds=time.perf_counter() - start)
    return HookCall(name, results=list(results), seconds=time.perf_counter() - start)


def call_each(manager: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[HookCall]:
    """`call_one` for every plugin implementing `hook_name`, in registration order."""
    return [call_one(manager, hook_name, plugin, **kwargs) for plugin in plugins_with(manager, hook_name)]
