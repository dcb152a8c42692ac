"""One generic, lazy registry type: every extensible concept of fer_bench is one.

Every extensible concept of fer_bench (models, losses, augmentation sets, split kinds,
label treatments, aligners) is a ``Registry``: names come from entry points of one group,
read from package metadata without importing anything, plus objects registered in-process
(the built-ins and tests/notebooks). An entry point's target is imported only when its name
is asked for. Unknown names get close-name suggestions; a plugin whose import fails is
warned about and skipped by listings, and asking for it by name raises with its error.
The design follows lm-evaluation-harness ``api/registry.py`` (one registry type, entry-point
placeholders, suggestions) and timm ``models/_registry.py`` (lazy listing).

**Once per process.** A registry reads its entry-point group once and keeps it; a target
is imported and coerced once and kept (a failure too); each warning is given once.
The metadata is read again after ``refresh()`` (``refresh_registries()`` for every
registry), or when ``sys.path`` changed since the last read (a distribution put on the
path mid-process, as the tests' throwaway packages are).

**Built-in modules.** ``builtins`` names modules that register fer_bench's own entries in
this registry (``ferplus_ms`` registers the ``ms-*`` label modes). They are imported on the
first lookup or listing, never as a side effect of importing some package.

**Families.** A registry may also hold *families*: a name pattern and a builder, for sets
of entries indexed by parameters written into the name (``adaptive_x1=5_x2=15``). A
well-formed name that is not registered yet is built on first lookup and registered then
(``Registry.register_family``); listings show the materialised names and the family's
template.

The model registry is ``fer_bench.models.MODELS``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import re
import sys
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from fer_bench.errors import ConfigError, FerBenchError

T = TypeVar("T")
IN_PROCESS = "in-process"   # the distribution column of an in-process registration
BUILTIN = "fer-bench"       # the distribution column of fer_bench's own built-ins


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name as a registry sees it.

    ``value``: the entry point target "pkg.module:attr" (or the qualified name of an
    in-process object); ``distribution``/``version``: the installed distribution that
    declares it (``IN_PROCESS`` / ``BUILTIN`` otherwise). ``loaded`` is True when the
    target was imported and accepted; ``error`` holds the failure message when it was
    tried and failed; ``item`` the coerced object.
    """

    name: str
    value: str
    distribution: str
    version: str
    loaded: bool = False
    error: str | None = None
    item: Any = None

    @property
    def source(self) -> str:
        """"dist==version (module:attr)", or "in-process (module:qualname)"."""
        if self.distribution in (IN_PROCESS, BUILTIN) and not self.version:
            return f"{self.distribution} ({self.value})"
        return f"{self.distribution}=={self.version} ({self.value})"

    @property
    def spec(self) -> Any:
        """The loaded item (a ``ModelSpec`` for models); None until loaded."""
        return self.item

    @property
    def release(self) -> str:
        """"dist==version" of the declaring distribution, "in-process" for in-process ones:
        part of a cell's identity (a new release of a plug-in is another plug-in)."""
        return self.distribution if not self.version else f"{self.distribution}=={self.version}"

    @property
    def builtin(self) -> bool:
        """True for fer_bench's own entries (distribution ``fer-bench``): their code is
        covered by ``PROTOCOL_VERSION``, so their release is not part of a cell's identity."""
        return _normalized(self.distribution) == BUILTIN


def _normalized(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qualname}"


def instances_of(cls: type, kind: str) -> Callable[[str, Any, Entry], Any]:
    """A ``coerce`` for registries whose targets must be ``cls`` objects."""
    def coerce(name: str, obj: Any, entry: Entry) -> Any:
        if isinstance(obj, cls):
            return obj
        raise ConfigError(f"{kind} {name!r} ({entry.source}): target is a {type(obj).__name__}, "
                          f"not a {cls.__name__}")
    return coerce


@dataclass(frozen=True)
class Family:
    """A parametric family of a registry (``Registry.register_family``)."""

    template: str
    pattern: re.Pattern[str]
    build: Callable[[str, re.Match[str]], Any]
    description: str = ""
    builtin: bool = False


_REGISTRIES: weakref.WeakSet[Registry] = weakref.WeakSet()


def refresh_registries() -> None:
    """``Registry.refresh`` on every registry of this process."""
    for registry in list(_REGISTRIES):
        registry.refresh()


def all_registries() -> list[Registry]:
    """Every registry created in this process, by entry-point group."""
    return sorted(_REGISTRIES, key=lambda registry: registry.group)


_Table = dict[str, tuple[Entry, "importlib.metadata.EntryPoint | None"]]


class Registry(Generic[T]):
    """Names -> objects of one kind, from entry-point group ``group`` and in-process.

    ``coerce(name, obj, entry) -> T`` validates/wraps an imported target (raise to reject
    it); ``error`` is the exception type for unknown or broken names (a ``FerBenchError``).
    ``builtins``: modules (dotted names) that register fer_bench's own entries here,
    imported on the first lookup or listing. In-process registrations shadow entry points
    of the same name (with a warning).
    """

    def __init__(self, kind: str, group: str, coerce: Callable[[str, Any, Entry], T],
                 error: type[FerBenchError] = ConfigError, option: str = "",
                 builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.option = option or kind
        self.builtins = tuple(builtins)
        self._coerce = coerce
        self._error = error
        self._in_process: dict[str, Entry] = {}
        self._families: dict[str, Family] = {}
        self._builtins_pending = bool(self.builtins)
        self._scanned: _Table | None = None      # the entry-point group, metadata only
        self._scanned_path: tuple[str, ...] = ()   # sys.path when it was read
        self._table: _Table | None = None        # scanned + in-process
        self._loaded: dict[str, tuple[Entry, BaseException | None]] = {}
        self._warned: set[str] = set()
        _REGISTRIES.add(self)

    # ------------------------------------------------------------ registration
    def register(self, name: str, obj: Any, *, builtin: bool = False,
                 distribution: str = "", version: str = "") -> T:
        """Add ``obj`` under ``name`` in this process; returns the coerced item.

        ``builtin`` marks fer_bench's own entries (no warning on import-time registration).
        ``distribution`` / ``version``: the release a package registering in-process
        declares (its ``Entry.release``, part of the identity of cells that use it);
        "in-process" without a version otherwise. Re-registering an in-process name
        replaces it with a warning.
        """
        if not name or not isinstance(name, str):
            raise self._error(f"{self.kind}: cannot register {obj!r} without a name")
        value = (qualified_name(obj) if inspect.isfunction(obj) or inspect.isclass(obj)
                 else f"{type(obj).__module__}:{name}")
        entry = Entry(name, value, BUILTIN if builtin else (distribution or IN_PROCESS),
                      "" if builtin else str(version), True)
        item = self._coerce(name, obj, entry)
        if name in self._in_process and not builtin:
            warnings.warn(f"{self.kind} {name!r}: replacing the in-process registration",
                          stacklevel=2)
        self._in_process[name] = replace(entry, item=item)
        self._table = None
        return item

    def unregister(self, name: str) -> None:
        """Remove an in-process registration (no-op if absent)."""
        if self._in_process.pop(name, None) is not None:
            self._table = None

    def register_family(self, template: str, pattern: str,
                        build: Callable[[str, re.Match[str]], Any], *,
                        description: str = "", builtin: bool = False) -> None:
        """A parametric family of names: any name that ``re.fullmatch``-es ``pattern`` and
        is not registered otherwise is built by ``build(name, match)`` on first lookup
        (``get``/``entry``) and registered then (``builtin`` as in ``register``), so
        ``names()`` lists it from then on. ``template`` is the family's display form
        (``adaptive_x1=<X1>_x2=<X2>``), shown in listings and unknown-name messages.
        ``build`` raises this registry's error type for well-formed names with bad
        parameters (e.g. X1 > X2)."""
        self._families[template] = Family(template, re.compile(pattern), build, description,
                                          builtin)

    def families(self) -> list[Family]:
        """The registered families, by template."""
        self._import_builtins()
        return [self._families[t] for t in sorted(self._families)]

    def _family_of(self, name: str) -> Family | None:
        return next((f for f in self._families.values() if f.pattern.fullmatch(name)), None)

    # ------------------------------------------------------------ discovery (cached)
    def refresh(self) -> None:
        """Forget what was read from package metadata and imported from entry points (and
        which warnings were given): the next lookup reads the group afresh. For tests and
        notebooks that install or remove a distribution mid-process."""
        self._scanned = None
        self._table = None
        self._loaded.clear()
        self._warned.clear()

    def _warn_once(self, message: str, stacklevel: int = 4) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=stacklevel)

    def _import_builtins(self) -> None:
        if not self._builtins_pending:
            return
        self._builtins_pending = False   # first, so a module that looks itself up may
        try:
            for module in self.builtins:
                importlib.import_module(module)
        except BaseException:
            self._builtins_pending = True
            raise

    def _scan(self) -> _Table:
        """The entry-point group: name -> (entry, entry point). Metadata only.

        A name declared by two distributions: the first by normalised distribution name
        wins (deterministic whatever the install order), with a warning naming both.
        """
        found = []
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = ep.dist
            dist_name = (dist.metadata["Name"] if dist is not None else None) or "<unknown>"
            found.append((dist_name, dist.version if dist is not None else "", ep))
        found.sort(key=lambda item: (_normalized(item[0]), item[2].name, item[2].value))
        table: _Table = {}
        for dist_name, version, ep in found:
            entry = Entry(ep.name, ep.value, dist_name, version)
            if ep.name in table:
                self._warn_once(f"{self.kind} name {ep.name!r} is registered twice in "
                                f"entry-point group {self.group!r}: keeping "
                                f"{table[ep.name][0].source}, ignoring {entry.source}")
                continue
            table[ep.name] = (entry, ep)
        return table

    def _discover(self) -> _Table:
        """Every name -> (entry, entry point or None for in-process), cached."""
        self._import_builtins()
        path = tuple(sys.path)
        if self._scanned is None or path != self._scanned_path:
            self.refresh()
            self._scanned, self._scanned_path = self._scan(), path
        if self._table is None:
            table = dict(self._scanned)
            for name, entry in self._in_process.items():
                if name in table and not entry.builtin:
                    self._warn_once(f"in-process {self.kind} {name!r} shadows "
                                    f"{table[name][0].source}")
                table[name] = (entry, None)
            self._table = table
        return self._table

    def _load(self, entry: Entry, ep: importlib.metadata.EntryPoint | None
              ) -> tuple[Entry, BaseException | None]:
        """(the entry loaded or with its error, the exception): imported once, kept."""
        if ep is None:   # in-process: already coerced
            return entry, None
        if entry.name not in self._loaded:
            try:
                item = self._coerce(entry.name, ep.load(), entry)
            except Exception as exc:   # any import-time failure of a third-party plugin
                result = (replace(entry, loaded=False, error=f"{type(exc).__name__}: {exc}"), exc)
            else:
                result = (replace(entry, loaded=True, error=None, item=item), None)
            self._loaded[entry.name] = result
        return self._loaded[entry.name]

    # ------------------------------------------------------------ lookups
    def names(self, *, loadable_only: bool = False) -> list[str]:
        """Sorted names. Imports nothing unless ``loadable_only`` (then failing plugins are
        warned about and left out)."""
        if not loadable_only:
            return sorted(self._discover())
        return [entry.name for entry in self.entries(load=True, warn=True) if entry.loaded]

    def entries(self, *, load: bool = False, warn: bool = False) -> list[Entry]:
        """Every name as an ``Entry``, sorted; ``load`` imports each target."""
        result = []
        for name, (entry, ep) in sorted(self._discover().items()):
            loaded = self._load(entry, ep)[0] if load else self._loaded.get(name, (entry,))[0]
            if warn and loaded.error:
                self._warn_once(f"{self.group} entry point '{name} = {entry.value}' from "
                                f"distribution {entry.distribution} {entry.version} failed "
                                f"to load and is skipped: {loaded.error}", stacklevel=3)
            result.append(loaded)
        return result

    def __iter__(self):
        """Iterates over the sorted names (nothing imported)."""
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._discover())

    def __contains__(self, name: object) -> bool:
        """True for a registered name and for a well-formed name of a family."""
        return isinstance(name, str) and (name in self._discover()
                                          or self._family_of(name) is not None)

    def entry(self, name: str) -> Entry:
        """The loaded ``Entry`` of ``name``; raises ``error`` for an unknown or broken name."""
        table = self._discover()
        if name not in table:
            family = self._family_of(name) if isinstance(name, str) else None
            if family is None:
                raise self._error(self.unknown_message(name, list(table)))
            self.register(name, family.build(name, family.pattern.fullmatch(name)),
                          builtin=family.builtin)
            return self._in_process[name]
        entry, exc = self._load(*table[name])
        if exc is None:
            return entry
        if isinstance(exc, FerBenchError):
            raise exc.with_traceback(None)
        raise self._error(f"{self.kind} {name!r} ({entry.source}) failed to load: "
                          f"{entry.error}") from exc

    def get(self, name: str) -> T:
        """The object registered as ``name`` (its plugin imported now)."""
        return self.entry(name).item

    def release(self, name: str) -> str | None:
        """"dist==version" (or "in-process") of the plug-in registered as ``name``; None for
        fer_bench's built-ins. Raises as ``entry`` does."""
        entry = self.entry(name)
        return None if entry.builtin else entry.release

    def unknown_message(self, name: str, known: list[str]) -> str:
        """"unknown <kind> 'x' (<option>); did you mean: a, b?" or the list of valid names
        (family templates included). Up to three close names, then every close family
        template: a family's own materialised names never crowd out its template."""

        def closest(candidates: list[str], n: int) -> list[str]:
            return sorted(difflib.get_close_matches(str(name), candidates, n=n, cutoff=0.6),
                          key=lambda c: (-difflib.SequenceMatcher(None, str(name), c).ratio(), c))

        templates = list(self._families)
        close = closest(list(known), 3)
        close += [t for t in closest(templates, max(1, len(templates))) if t not in close]
        known = [*known, *templates]
        if close:
            return f"unknown {self.kind} {name!r}; did you mean: {', '.join(close)}?"
        return (f"unknown {self.kind} {name!r}; valid: "
                f"{', '.join(sorted(known)) or 'none registered'}")
