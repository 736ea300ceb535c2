"""Bounded waits with tenacity: every wait has a timeout and an error that says what to try."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from harness.errors import WaitTimeout

T = TypeVar("T")


def wait_until[T](
    probe: Callable[[], T | None],
    *,
    timeout: float,
    expected: str,
    seen: Callable[[], str] = lambda: "",
    hint: str = "",
    interval: float = 0.05,
) -> T:
    """Call `probe` until it returns something truthy; WaitTimeout after `timeout` seconds."""
    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_result(lambda r: not r),
            reraise=True,
        ):
            with attempt:
                result = probe()
            if not attempt.retry_state.outcome.failed and result:  # type: ignore[union-attr]
                return result
    except RetryError:
        pass
    raise WaitTimeout(f"{expected} within {timeout:g}s", seen=seen(), hint=hint)


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free ports: every socket stays bound until all are chosen (one at a time, the
    kernel may hand out the same port twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
