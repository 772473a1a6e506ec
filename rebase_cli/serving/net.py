"""Ports and URLs for servers bound on this machine."""

from __future__ import annotations

import contextlib
import socket

from rebase_cli.errors import ServeError

# SGLang's own default is 30000; the reward server gets the next port so both roles can run
# side by side with no flags.
DEFAULT_PORTS = {"policy": 30000, "reward": 30001}


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind (host, port) now. SO_REUSEADDR makes sockets in TIME_WAIT
    count as free (servers set it too), while a listening socket still counts as taken."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    """A port the OS considers free on `host` (it may be taken again before the server binds;
    the readiness check would then report the server's own bind error)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_port(role: str, host: str, requested: int | None) -> int:
    """The port to serve on.

    None: the role's default port if free, else any free port (the registry records it, so
    `rebase search` still finds the server). 0: any free port. Otherwise the requested port,
    which must be free."""
    if requested is None:
        default = DEFAULT_PORTS[role]
        return default if port_is_free(host, default) else free_port(host)
    if requested == 0:
        return free_port(host)
    if not 0 < requested < 65536:
        raise ServeError(f"port {requested} is out of range", "use 1-65535, or 0 for any free port")
    with contextlib.suppress(OSError):
        if port_is_free(host, requested):
            return requested
    raise ServeError(
        f"port {requested} on {host} is already in use",
        "see `rebase serve status`, pick another --port, or --port 0 for any free port",
    )


def base_url(host: str, port: int) -> str:
    """The URL clients on this machine use: a wildcard bind is reached through loopback."""
    connect = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in connect:
        connect = f"[{connect}]"
    return f"http://{connect}:{port}"
