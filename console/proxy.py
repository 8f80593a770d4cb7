"""The console behind a TLS-terminating reverse proxy: the address browsers use
(`--public-url`) and the proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed
(`--trusted-proxies`). Nobody else's forwarding headers are: any client can send them.

Both come from the `llmcloud console` options, or the environment variables below (which
the command sets for the provider, whose `console` method takes no such arguments).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmcloud.stacks.errors import ConfigError

PUBLIC_URL_VARIABLE = "LLMCLOUD_CONSOLE_PUBLIC_URL"
TRUSTED_PROXIES_VARIABLE = "LLMCLOUD_CONSOLE_TRUSTED_PROXIES"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxySettings:
    """How browsers reach the console: `public_origin` (`https://console.example.com`), the
    origin its pages are served at through the proxy, or None when browsers reach the
    console directly; `trusted_proxies`, the networks whose forwarding headers are believed."""

    public_origin: str | None = None
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, public_url: str | None, trusted_proxies: str | None) -> ProxySettings:
        """The settings from the options' text; `ConfigError` for a value that is not one."""
        return cls(_origin(public_url) if public_url else None,
                   _networks(trusted_proxies) if trusted_proxies else ())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxySettings:
        return cls.parse(environ.get(PUBLIC_URL_VARIABLE) or None,
                         environ.get(TRUSTED_PROXIES_VARIABLE) or None)

    def environ(self) -> dict[str, str]:
        """These settings as the environment variables `from_environ` reads."""
        values = {}
        if self.public_origin:
            values[PUBLIC_URL_VARIABLE] = self.public_origin
        if self.trusted_proxies:
            values[TRUSTED_PROXIES_VARIABLE] = ",".join(map(str, self.trusted_proxies))
        return values

    @property
    def public_https(self) -> bool:
        return bool(self.public_origin and self.public_origin.startswith("https://"))

    def public_hosts(self) -> set[str]:
        """The `Host` headers a request through the public URL carries: `host`, and
        `host:port` (browsers leave the default port out, some proxies write it)."""
        if not self.public_origin:
            return set()
        parts = urlsplit(self.public_origin)
        if parts.port:
            return {parts.netloc}
        return {parts.netloc, f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"}

    def forwarded_allow_ips(self) -> list[str]:
        """The trusted networks as uvicorn's `ProxyHeadersMiddleware` takes them."""
        return [str(network) for network in self.trusted_proxies]


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None  # type: ignore[assignment]
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username or parts.password):
        raise ConfigError(f"--public-url {url!r} is not the URL of the console",
                          context="a scheme and a host, optionally a port, no path: the "
                                  "console is served at the root of its address",
                          hint="--public-url https://console.example.com")
    netloc = parts.netloc.lower()
    default = {"http": 80, "https": 443}[parts.scheme]
    if parts.port == default:
        netloc = netloc.rsplit(":", 1)[0]  # as a browser writes its Origin
    return f"{parts.scheme}://{netloc}"


def _networks(text: str) -> tuple[Network, ...]:
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "*":
            raise ConfigError("--trusted-proxies '*' would believe anybody's X-Forwarded-For",
                              context="any client can send forwarding headers; only the "
                                      "proxy's own address may be trusted",
                              hint="name the proxy's address: --trusted-proxies 10.0.0.5")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"--trusted-proxies: {item!r} is not an IP address or network",
                              hint="--trusted-proxies 10.0.0.5,192.168.1.0/24") from None
    return tuple(networks)
