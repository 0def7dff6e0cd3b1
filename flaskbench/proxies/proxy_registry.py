"""The proxies flaskbench knows: every module of this package that defines `PROXY`, found by
itself (as servers/registry.py finds servers). Everything else asks here, by a target's proxy
name, and never names a proxy itself."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path

from flaskbench.proxies import reverse_proxy
from flaskbench.proxies.reverse_proxy import NO_PROXY, PROXY_KEYS, Proxy, ProxySpec

_NOT_PROXIES = ("reverse_proxy", "proxy_registry")


def _discover() -> dict[str, Proxy]:
    found: dict[str, Proxy] = {}
    for module in pkgutil.iter_modules([str(Path(reverse_proxy.__file__).parent)]):
        if module.name in _NOT_PROXIES:
            continue
        proxy = importlib.import_module(f"flaskbench.proxies.{module.name}").PROXY
        assert isinstance(proxy, Proxy), module.name
        assert proxy.name == module.name, module.name
        found[proxy.name] = proxy
    return dict(sorted(found.items()))


PROXIES: Mapping[str, Proxy] = _discover()
# What `proxy` may be: a proxy's name, or none.
CHOICES = (NO_PROXY, *PROXIES)
_FLAGS = {
    "proxy_buffering": "buffering",
    "proxy_request_buffering": "request_buffering",
    "proxy_keepalive": "keepalive",
}


def proxy_of(spec: ProxySpec) -> Proxy:
    return PROXIES[spec.name]


def split_settings(
    settings: Mapping[str, object],
) -> tuple[dict[str, object], dict[str, object]]:
    """A target's table split into its server's settings and its proxy's."""
    server = {k: v for k, v in settings.items() if k not in PROXY_KEYS}
    proxy = {k: v for k, v in settings.items() if k in PROXY_KEYS}
    return server, proxy


def parse_proxy(
    raw: Mapping[str, object], report: Callable[[str, str], None]
) -> tuple[ProxySpec | None, bool]:
    """A target's proxy keys (without `proxy`, or `proxy = "none"`: served directly); and
    whether they could be read (each problem reported as (key, message))."""
    name = raw.get("proxy", NO_PROXY)
    ok = True
    if name not in CHOICES:
        report("proxy", f"unknown proxy {name!r}; use one of {', '.join(map(repr, CHOICES))}")
        ok = False
    flags: dict[str, bool] = {}
    for key, field in _FLAGS.items():
        if key not in raw:
            continue
        if not isinstance(raw[key], bool):
            report(key, f"must be true or false, got {raw[key]!r}")
            ok = False
        elif name == NO_PROXY:
            report(key, f'applies behind a proxy only; set proxy = "{next(iter(PROXIES))}"')
            ok = False
        else:
            flags[field] = bool(raw[key])
    if not ok or name == NO_PROXY:
        return None, ok
    return ProxySpec(str(name), **flags), True


def proxy_name_part(key: str, value: object) -> str:
    """How a sweep's generated target name shows a proxy setting that varies."""
    if key == "proxy":
        return "direct" if value == NO_PROXY else str(value)
    short = {"proxy_buffering": "pbuf", "proxy_request_buffering": "preqbuf"}.get(key, "upka")
    return short if value else f"no{short}"


def describe_proxy(spec: ProxySpec) -> str:
    return proxy_of(spec).describe(spec)


def proxy_notes(spec: ProxySpec) -> tuple[str, ...]:
    return proxy_of(spec).notes(spec)


def debian_packages(specs: list[ProxySpec | None]) -> tuple[str, ...]:
    """The Debian packages every proxy among these needs, each once, sorted."""
    return tuple(sorted({p for spec in specs if spec is not None for p in proxy_of(spec).packages}))
