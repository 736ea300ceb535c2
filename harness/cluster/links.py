"""A worker's own link to the server in a proxied cluster, and the link faults on it.

Each worker dials its own pair of Toxiproxy proxies (REST API and SSE poll port) instead of the
server, so one worker can be cut off, slowed, throttled or reset while the others are not. The
backends say how proxies are created and where Toxiproxy runs; the faults on a link are here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.toxiproxy import STREAMS, Toxiproxy

LINK_PORTS = ("api", "poll")  # the server ports a worker talks to: REST API and SSE message source


@dataclass
class Link:
    """A worker's own way to the server in a proxied cluster: one Toxiproxy proxy per server port."""

    worker: str
    proxies: dict[str, str]  # "api" | "poll" -> proxy name
    ports: dict[str, int]  # "api" | "poll" -> the port the proxy listens on (what the worker dials)
    cut: bool = False
    toxics: set[str] = field(default_factory=set)


class ProxiedLinks:
    """Link faults for a cluster whose workers reach the server through per-worker proxies."""

    links: dict[str, Link]

    def _toxiproxy_client(self) -> Toxiproxy | None:
        """The Toxiproxy API client of a proxied cluster (None: the workers talk to the server)."""
        raise NotImplementedError

    def _toxiproxy(self) -> Toxiproxy:
        client = self._toxiproxy_client()
        if client is None:
            raise HarnessError("a proxied cluster for link faults (ClusterConfig.proxied, scenario setting proxied=True)",
                               seen="the workers talk to the server directly")  # fmt: skip
        return client

    def link(self, worker: str) -> Link:
        self._toxiproxy()
        try:
            return self.links[worker]
        except KeyError:
            raise HarnessError(f"a worker named one of {sorted(self.links)}", seen=worker) from None

    def set_link(self, worker: str, *, up: bool) -> None:
        """Cut (up=False) or restore a worker's link: a disabled proxy closes its connections and
        refuses new ones, so the server drops the worker from the group at once."""
        link, tp = self.link(worker), self._toxiproxy()
        for name in link.proxies.values():
            tp.set_enabled(name, up)
        link.cut = not up

    def add_link_toxic(self, worker: str, type: str, attributes: dict[str, int], *, stream: str = "downstream",
                       toxicity: float = 1.0, ports: tuple[str, ...] = LINK_PORTS) -> str:  # fmt: skip
        """Add a Toxiproxy toxic (latency, bandwidth, reset_peer, timeout) to the worker's link.

        `stream`: downstream (server -> worker), upstream (worker -> server) or both; `ports`: which of
        the worker's proxies (api, poll). Returns the toxic's name, for remove_link_toxic.
        """
        link, tp = self.link(worker), self._toxiproxy()
        streams = STREAMS if stream == "both" else (stream,)
        name = f"{type}-{stream}"
        for kind in ports:
            for s in streams:
                tp.add_toxic(
                    link.proxies[kind], type, attributes, name=f"{name}-{s}", stream=s, toxicity=toxicity
                )
        link.toxics.add(name)
        return name

    def remove_link_toxic(self, worker: str, name: str | None = None) -> None:
        """Remove one toxic (by the name add_link_toxic returned) or, without a name, all of them."""
        link, tp = self.link(worker), self._toxiproxy()
        for kind in LINK_PORTS:
            for toxic in tp.toxics(link.proxies[kind]):
                if name is None or toxic["name"].startswith(f"{name}-"):
                    tp.remove_toxic(link.proxies[kind], toxic["name"])
        link.toxics = set() if name is None else link.toxics - {name}
