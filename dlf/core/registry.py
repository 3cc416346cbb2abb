"""Named extension points (models, losses, schedule shapes, optimizers, datasets, probes): a new
one is one `REGISTRY.register(name, ...)` call, and config validation offers what is registered."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dlf.errors import ConfigError

T = TypeVar("T")
REGISTERING_MODULES: set[str] = set()  # modules on the stack of any registration (plugins must be among them)


def _note_callers() -> None:
    import inspect

    f = inspect.currentframe()
    while f is not None:
        REGISTERING_MODULES.add(f.f_globals.get("__name__", ""))
        f = f.f_back


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    item: T
    config: type | None  # the typed config of this variant (None: the group's shared config)


class Registry(Generic[T]):
    """name -> (item, typed config). `key` is the config key that chooses an entry (e.g.
    `model.name`), used in the one-line error for an unknown name."""

    def __init__(self, key: str):
        self.key = key
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, item: T | None = None, *, config: type | None = None,
                 replace: bool = False) -> Any:
        """Register `item` under `name` (or use as a decorator: `@REG.register("x", config=XConfig)`)."""
        def add(obj: T) -> T:
            if name in self._entries and not replace:
                raise ValueError(f"{self.key}={name!r} is registered already (pass replace=True)")
            self._entries[name] = Entry(name, obj, config)
            _note_callers()
            return obj
        return add if item is None else add(item)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise ConfigError(f"{self.key}={name!r} is not allowed; choose one of: {', '.join(self._entries)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.entry(name).item

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def config_of(self, name: str) -> type | None:
        return self.entry(name).config


def lazy(path: str) -> Callable[..., Any]:
    """A function imported on first call from 'module:attr' (keeps heavy imports out of config time)."""
    def call(*args, **kwargs):
        import importlib

        module, _, attr = path.partition(":")
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)
    call.__qualname__ = path
    return call


def import_plugins(modules: Any) -> None:
    """Import the `plugins` modules (they register models, losses, probes, ... on import)."""
    import importlib

    if modules is None:
        return
    if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
        raise ConfigError(f"plugins={modules!r} is not allowed; expected a list of module names")
    for m in modules:
        if not isinstance(m, str) or not m.strip():
            raise ConfigError(f"plugins: {m!r} is not allowed; expected a module name (e.g. plugins=[my_models])")
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {m!r} ({e}); expected an importable module "
                              "(on PYTHONPATH)") from None
        if not any(n == m or n.startswith(m + ".") for n in REGISTERING_MODULES):
            raise ConfigError(f"plugins: {m!r} registered nothing; expected a module that registers a model, loss, "
                              "schedule shape, optimizer, dataset or probe when imported (e.g. MODELS.register)")
