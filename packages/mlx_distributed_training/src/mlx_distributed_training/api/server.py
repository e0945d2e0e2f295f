"""`mlx-train-serve`: run the training job server under uvicorn."""

import logging
import socket
import sqlite3
import sys
from collections.abc import Sequence

import uvicorn

from .app import create_app
from .instance_lock import DatabaseInUseError, InstanceLock
from .settings import ServerSettings, parse_settings
from .store import JobStore, UnsupportedSchemaError

logger = logging.getLogger("mlx_distributed_training.api.server")

# uvicorn's default backlog.
BACKLOG = 2048


def _bind(settings: ServerSettings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    # Listen at once, so clients that connect while the app starts up wait in
    # the backlog instead of being refused.
    sock.listen(BACKLOG)
    sock.set_inheritable(False)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    # Check the lock and the database before binding, so a bad start ends
    # with a one-line reason. The app takes the lock for real.
    probe = InstanceLock(settings.db.absolute())
    try:
        probe.acquire()
        JobStore(settings.db).close()
    except (DatabaseInUseError, UnsupportedSchemaError) as error:
        logger.error("%s", error)
        return 1
    except (OSError, sqlite3.Error) as error:
        logger.error("Cannot open the job database %s: %s", settings.db, error)
        return 1
    finally:
        probe.release()

    try:
        sock = _bind(settings)
    except OSError as error:
        logger.error(
            "Cannot listen on %s port %s: %s", settings.host, settings.port, error
        )
        return 1
    host, port = sock.getsockname()[:2]
    logger.info("mlx-train-serve listening on http://%s:%s", host, port)

    config = uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level,
        # None: uvicorn's loggers go through the root handler set up above.
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown has finished.
        logger.info("mlx-train-serve stopped")
    # uvicorn sets `started` only once the app's startup succeeded.
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
