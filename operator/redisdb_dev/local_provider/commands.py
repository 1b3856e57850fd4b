"""Raw Redis commands on a database's primary, for the REST face: one small connection pool per database.

The REST API returns Redis's own replies (RESP2 shapes: flat arrays, integers, bulk strings), so commands go
straight through a pooled connection without redis-py's per-command reply parsing, and replies come back as
bytes, ints, ``None``, lists, or ``ResponseError`` values for errors inside a pipeline or a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ExecAbortError, ResponseError

from .tls_files import TlsFiles

log = logging.getLogger(__name__)

Argument = str | bytes
Command = Sequence[Argument]

# A few connections are plenty for tests and demos; waiting for one beats failing with "too many connections".
MAX_CONNECTIONS = 8


class TransactionDiscarded(Exception):
    """MULTI/EXEC refused the whole transaction (EXECABORT); ``error`` is the first queued error, else EXECABORT."""

    def __init__(self, error: ResponseError) -> None:
        super().__init__(str(error))
        self.error = error


class CommandPool:
    """Connections to one redis-server, authenticated with one password; replaced when either changes."""

    def __init__(self, host: str, port: int, password: str, tls: TlsFiles | None = None) -> None:
        self.key = (port, password)
        tls_options: dict[str, Any] = {}
        if tls is not None:
            tls_options = {"connection_class": aioredis.SSLConnection, "ssl_ca_certs": str(tls.ca)}
        self._pool = aioredis.BlockingConnectionPool(
            **tls_options,
            host=host,
            port=port,
            password=password,
            protocol=2,
            max_connections=MAX_CONNECTIONS,
            timeout=10,
            socket_timeout=10,
            socket_connect_timeout=5,
        )

    async def run(self, commands: Sequence[Command], *, transaction: bool = False) -> list[Any]:
        """Send every command in one write and read every reply in order (error replies become values).

        With ``transaction`` the commands are wrapped in MULTI/EXEC and the result is EXEC's reply; a transaction
        Redis discards raises ``TransactionDiscarded``. Any other failure drops the connection, so a half-read
        reply can never reach the next request on that socket.
        """
        wire: list[Command] = [("MULTI",), *commands, ("EXEC",)] if transaction else list(commands)
        connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(connection.pack_commands(wire))
            replies: list[Any] = []
            for _ in wire:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await self._pool.release(connection)
        if not transaction:
            return replies
        result = replies[-1]
        if isinstance(result, ResponseError):
            queued = next((reply for reply in replies[1:-1] if isinstance(reply, ResponseError)), None)
            raise TransactionDiscarded(queued or result)
        if result is None:  # only WATCH makes EXEC answer nil, and the REST face never sends WATCH
            raise TransactionDiscarded(ExecAbortError("Transaction discarded", status_code="EXECABORT"))
        return list(result)

    async def close(self) -> None:
        await self._pool.aclose()


def error_text(error: ResponseError) -> str:
    """Redis's own error line: redis-py strips the code ("ERR", "WRONGTYPE", ...) into ``status_code``."""
    code = getattr(error, "status_code", None)
    message = str(error)
    return f"{code} {message}" if code else message
