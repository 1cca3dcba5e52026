"""The local RabbitMQ server, for the drill, the bench and the tests: starting and restarting
it (the drill's broker fault) and a vhost of one's own. Server control goes through
`rabbitmq-server` and `rabbitmqctl`, so it needs a local RabbitMQ; the fleet itself needs
neither. The AMQP side (a connection opens, the queues emptied) is `workers.queues`': nothing
under enrichment/ imports kombu.
"""

from __future__ import annotations

import subprocess
import time
from urllib.parse import unquote, urlsplit

from workers.queues import answers

# `rabbitmq-server -detached` returns at once; the node answers some seconds later.
START_TIMEOUT_S = 60.0
CTL_TIMEOUT_S = 60.0


class RabbitMQError(RuntimeError):
    """The local RabbitMQ cannot be reached or controlled; the message says what to do."""


def _ctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["rabbitmqctl", *args],
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT_S,
            check=check,
        )
    except FileNotFoundError:
        raise RabbitMQError(
            "rabbitmqctl is not installed (apt-get install rabbitmq-server)"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise RabbitMQError(f"rabbitmqctl {' '.join(args)}: {exc.stderr.strip()[:200]}") from None


def node_running() -> bool:
    return _ctl("status", check=False).returncode == 0


def start(timeout_s: float = START_TIMEOUT_S) -> None:
    """Start the local node if it is down (`rabbitmq-server -detached`) and wait until it runs."""
    if node_running():
        return
    try:
        subprocess.run(["rabbitmq-server", "-detached"], check=True, capture_output=True)
    except FileNotFoundError:
        raise RabbitMQError(
            "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
        ) from None
    # await_startup waits for the node to finish booting (its listeners are up then).
    deadline = time.monotonic() + timeout_s
    while _ctl("await_startup", "--timeout", "5", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RabbitMQError(f"RabbitMQ did not start within {timeout_s:.0f} s")
        time.sleep(0.5)


def restart() -> float:
    """Stop the node (its process exits) and start it again; seconds it was unreachable."""
    stopped = time.monotonic()
    _ctl("shutdown")
    start()
    return time.monotonic() - stopped


def vhost_and_user(url: str) -> tuple[str, str]:
    """("test", "guest") for amqp://guest:guest@host:5672/test; "/" for no path or "//"."""
    parts = urlsplit(url)
    return unquote(parts.path[1:]) or "/", parts.username or "guest"


def ensure_vhost(url: str) -> None:
    """Make `url`'s vhost (and its user's rights on it) if a connection is refused."""
    if answers(url):
        return
    if not node_running():
        raise RabbitMQError("RabbitMQ is not running: start it with rabbitmq-server -detached")
    vhost, user = vhost_and_user(url)
    _ctl("add_vhost", vhost, check=False)  # exists already: the rights may be what is missing
    _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    if not answers(url):
        raise RabbitMQError(f"cannot open {vhost!r} as {user!r}: check the password")


def reset_vhost(url: str) -> None:
    """Delete and re-create `url`'s vhost: no queue, exchange or message of an earlier run."""
    vhost, user = vhost_and_user(url)
    if vhost == "/":
        raise RabbitMQError("give the drill a vhost of its own, not '/'")
    _ctl("delete_vhost", vhost, check=False)
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
