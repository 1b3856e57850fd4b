"""The Upstash Redis REST API for each Upstash-API database, at ``/rest/<database_id>`` (docs/wire-contract.md).

This is a data plane, not a management API: it runs Redis commands for applications (``Redis.fromEnv()``), so the
admin API's injected faults (latency, 503s, 429s) never apply to it. Calls are still counted, as ``rest:command``,
``rest:pipeline`` and ``rest:multi-exec``, so tests can see an application's traffic.

Commands run on the database's primary redis-server. The read-only token runs only commands Redis itself marks
as reads (asked once per command name with ``COMMAND INFO``); tokens and passwords are never logged.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web
from redis.exceptions import RedisError, ResponseError

from .commands import Argument, Command, CommandPool, TransactionDiscarded, error_text
from .gate import WireGate
from .registry import LocalDatabase, Registry, serves_rest

log = logging.getLogger(__name__)

PREFIX = "/rest"
Endpoint = Literal["command", "pipeline", "multi-exec"]

UNAUTHORIZED = "WRONGPASS invalid or missing auth token"
# Commands that change a pooled connection's state (or the server's life) rather than run against the data: over
# HTTP they would leak into whichever request gets that connection next.
UNAVAILABLE = frozenset(
    {
        "auth",
        "client",
        "debug",
        "discard",
        "exec",
        "failover",
        "hello",
        "monitor",
        "multi",
        "psubscribe",
        "psync",
        "punsubscribe",
        "quit",
        "replicaof",
        "reset",
        "select",
        "shutdown",
        "slaveof",
        "ssubscribe",
        "subscribe",
        "sunsubscribe",
        "sync",
        "unsubscribe",
        "unwatch",
        "watch",
    }
)
# Upstash's read-only token also refuses these "powerful" reads.
READ_ONLY_REFUSED = frozenset({"scan", "keys"})
_WRITE_FLAGS = frozenset({"write", "admin", "may_replicate"})
_WRITE_CATEGORIES = frozenset({"@write", "@admin", "@dangerous", "@pubsub"})


class RestError(Exception):
    """A refused request: the HTTP status and the ``{"error": ...}`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CommandTraits:
    flags: frozenset[str]
    categories: frozenset[str]
    has_subcommands: bool

    def is_read(self) -> bool:
        if self.flags & _WRITE_FLAGS or self.categories & _WRITE_CATEGORIES:
            return False
        # Scripts may write unless Redis knows they cannot (EVAL_RO, FCALL_RO carry "readonly").
        return "@scripting" not in self.categories or "readonly" in self.flags


# Set from --advertise-host: URLs handed out name this host (the request's port) instead of the one asked.
ADVERTISE_HOST = web.AppKey("advertise_host", str)


def url_host(host: str) -> str:
    """A host as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def base_url(request: web.Request) -> str:
    """This provider's address as handed out: the advertised host if any, else the one whoever asked used."""
    advertised = request.app.get(ADVERTISE_HOST)
    if advertised:
        return f"{request.scheme}://{url_host(advertised)}:{request.url.port}"
    return f"{request.scheme}://{request.host}"


def rest_url(request: web.Request, database_id: str) -> str:
    """Where this database's REST API is, as reached by whoever asked (the same host and port as this request)."""
    return f"{base_url(request)}{PREFIX}/{database_id}"


class RestApi:
    def __init__(self, registry: Registry, gate: WireGate) -> None:
        self.registry = registry
        self.gate = gate
        self._traits: dict[str, CommandTraits | None] = {}  # by lower-case name, or "name|subcommand"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", PREFIX + "/{id}", self.handle),
            web.route("*", PREFIX + "/{id}/{tail:.*}", self.handle),
        ]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        endpoint: Endpoint = tail if tail in ("pipeline", "multi-exec") else "command"  # type: ignore[assignment]
        self.gate.count([f"rest:{endpoint}"])
        try:
            if request.method not in ("HEAD", "GET", "POST", "PUT"):
                raise RestError(405, f"ERR method {request.method} is not allowed; use GET, POST, PUT or HEAD")
            database = self._database(request)
            read_only = self._authorize(request, database)
            if request.headers.get("Upstash-Response-Format", "json").lower() != "json":
                raise RestError(400, "ERR the local provider answers in the json response format only")
            encode = _Encoder(base64_strings=request.headers.get("Upstash-Encoding", "").lower() == "base64")
            pool = await database.commands()
            if endpoint == "command":
                command = await self._single_command(request, tail)
                await self._check(pool, command, read_only)
                [reply] = await pool.run([command])
                if isinstance(reply, ResponseError):
                    raise RestError(400, error_text(reply))
                return web.json_response({"result": encode(reply)})
            commands = _commands_body(await request.read())
            if endpoint == "pipeline":
                return web.json_response(await self._pipeline(pool, commands, read_only, encode))
            for command in commands:
                await self._check(pool, command, read_only)
            try:
                replies = await pool.run(commands, transaction=True)
            except TransactionDiscarded as discarded:
                raise RestError(400, error_text(discarded.error)) from None
            return web.json_response([encode.item(reply) for reply in replies])
        except RestError as error:
            return web.json_response({"error": error.message}, status=error.status)
        except (RedisError, OSError) as error:
            log.warning(
                "rest:%s on %s failed talking to redis-server: %s",
                endpoint,
                request.match_info["id"],
                type(error).__name__,
            )
            return web.json_response({"error": "ERR database temporarily unavailable"}, status=503)

    def _database(self, request: web.Request) -> LocalDatabase:
        database = self.registry.databases.get(request.match_info["id"])
        if database is None or not serves_rest(database.record.api) or not database.record.rest_token:
            raise RestError(404, "ERR database not found")
        return database

    def _authorize(self, request: web.Request, database: LocalDatabase) -> bool:
        """True for the read-only token, False for the standard one; anything else is refused."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        token = credential.strip() if scheme.lower() == "bearer" else request.query.get("_token", "")
        if token:
            record = database.record
            if hmac.compare_digest(token.encode(), record.rest_token.encode()):
                return False
            if hmac.compare_digest(token.encode(), record.read_only_rest_token.encode()):
                return True
        raise RestError(401, UNAUTHORIZED)

    async def _single_command(self, request: web.Request, tail: str) -> Command:
        """``POST /`` with a JSON array, or path style ``/set/k/v`` (+ the body as last argument, + query args)."""
        body = await request.read()
        if not tail:
            if not body:
                raise RestError(400, 'ERR empty command: POST a JSON array such as ["GET", "key"]')
            return _command(_json(body))
        raw_tail = request.rel_url.raw_path.split("/", 3)[3]  # "", "rest", id, tail: keep %2F inside arguments
        arguments: list[Argument] = [unquote(segment) for segment in raw_tail.split("/")]
        while len(arguments) > 1 and arguments[-1] == "":
            arguments.pop()
        if body:
            arguments.append(body)
        for key, value in request.query.items():
            if key != "_token":
                arguments.extend([key, value] if value else [key])
        return arguments

    async def _pipeline(
        self, pool: CommandPool, commands: list[Command], read_only: bool, encode: _Encoder
    ) -> list[dict[str, Any]]:
        """Every command in order; a refused one answers its error in place and the others still run."""
        refused: dict[int, str] = {}
        for index, command in enumerate(commands):
            try:
                await self._check(pool, command, read_only)
            except RestError as error:
                refused[index] = error.message
        allowed = [command for index, command in enumerate(commands) if index not in refused]
        replies = iter(await pool.run(allowed) if allowed else [])
        return [
            {"error": refused[index]} if index in refused else encode.item(next(replies))
            for index in range(len(commands))
        ]

    async def _check(self, pool: CommandPool, command: Command, read_only: bool) -> None:
        name = _name(command)
        if name in UNAVAILABLE:
            raise RestError(400, f"ERR Command is not available: '{name}'")
        if read_only and not await self._is_read(pool, command):
            raise RestError(400, f"NOPERM this user has no permissions to run the '{name}' command or its subcommand")

    async def _is_read(self, pool: CommandPool, command: Command) -> bool:
        name = _name(command)
        if name in READ_ONLY_REFUSED:
            return False
        traits = await self._lookup(pool, name)
        if traits is None:
            return True  # Redis answers "unknown command" itself
        if traits.has_subcommands and len(command) > 1:
            traits = await self._lookup(pool, f"{name}|{_text(command[1]).lower()}")
            if traits is None:
                return True
        return traits.is_read()

    async def _lookup(self, pool: CommandPool, name: str) -> CommandTraits | None:
        if name not in self._traits:
            [reply] = await pool.run([("COMMAND", "INFO", name)])
            info = reply[0] if isinstance(reply, list) and reply else None
            self._traits[name] = (
                None
                if not isinstance(info, list)
                else CommandTraits(
                    flags=frozenset(_text(flag) for flag in info[2]),
                    categories=frozenset(_text(category) for category in info[6]) if len(info) > 6 else frozenset(),
                    has_subcommands=len(info) > 9 and bool(info[9]),
                )
            )
        return self._traits[name]


class _Encoder:
    """Redis replies as JSON: bulk strings as UTF-8 (invalid bytes replaced), or base64 when the client asks."""

    def __init__(self, *, base64_strings: bool) -> None:
        self.base64_strings = base64_strings

    def __call__(self, reply: Any) -> Any:
        if isinstance(reply, bytes):
            if reply == b"OK":  # Upstash leaves "OK" as is even in base64 mode; its clients decode it that way
                return "OK"
            return base64.b64encode(reply).decode("ascii") if self.base64_strings else reply.decode(errors="replace")
        if isinstance(reply, list):
            return [self(element) for element in reply]
        if isinstance(reply, ResponseError):
            return error_text(reply)
        return reply  # int or None

    def item(self, reply: Any) -> dict[str, Any]:
        """One entry of a pipeline or transaction answer."""
        if isinstance(reply, ResponseError):
            return {"error": error_text(reply)}
        return {"result": self(reply)}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RestError(400, "ERR the request body is not valid JSON") from None


def _commands_body(body: bytes) -> list[Command]:
    parsed = _json(body) if body else None
    if not isinstance(parsed, list) or not parsed:
        raise RestError(400, 'ERR the body must be a JSON array of commands, such as [["SET", "k", "v"], ["GET", "k"]]')
    return [_command(command) for command in parsed]


def _command(parsed: Any) -> Command:
    """A JSON array of strings and numbers, the command name first."""
    if not isinstance(parsed, list) or not parsed:
        raise RestError(400, 'ERR a command is a non-empty JSON array, such as ["SET", "k", "v"]')
    arguments: list[Argument] = []
    for argument in parsed:
        if isinstance(argument, str):
            arguments.append(argument)
        elif isinstance(argument, int | float) and not isinstance(argument, bool):
            arguments.append(json.dumps(argument))
        else:
            raise RestError(400, f"ERR command arguments must be strings or numbers, not {json.dumps(argument)[:40]}")
    return arguments


def _name(command: Command) -> str:
    return _text(command[0]).lower()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
