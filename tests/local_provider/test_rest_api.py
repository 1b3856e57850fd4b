"""The Upstash Redis REST API of each database: real HTTP on loopback, every effect checked on the real redis-server."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from redisdb_dev.local_provider.store import SCHEMA_VERSION, Store
from tests.harness.local_provider import UPSTASH_EMAIL, LocalProvider, running_local_provider

from .helpers import eventually, redis_client, unique


@dataclass(frozen=True)
class RestDatabase:
    id: str
    url: str
    token: str
    read_only_token: str
    port: int
    password: str

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"Authorization": f"Bearer {token or self.token}"}, timeout=30)


def upstash(provider: LocalProvider) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=provider.upstash_url, auth=provider.upstash_auth, timeout=60)


def rest_database(body: dict[str, Any]) -> RestDatabase:
    return RestDatabase(
        id=body["database_id"],
        url=body["rest_url"],
        token=body["rest_token"],
        read_only_token=body["read_only_rest_token"],
        port=body["port"],
        password=body["password"],
    )


@pytest.fixture
async def database(local_provider: LocalProvider) -> AsyncIterator[RestDatabase]:
    async with upstash(local_provider) as api:
        response = await api.post(
            "/redis/database", json={"database_name": unique("rest"), "region": "global", "primary_region": "us-east-1"}
        )
        assert response.status_code == 200, response.text
        yield rest_database(response.json())
        await api.delete(f"/redis/database/{response.json()['database_id']}")


async def test_database_json_carries_rest_credentials(local_provider: LocalProvider, database: RestDatabase) -> None:
    assert database.url == f"{local_provider.url}/rest/{database.id}"
    assert database.token and database.read_only_token and database.token != database.read_only_token
    assert database.token != database.password
    async with upstash(local_provider) as api:
        fetched = (await api.get(f"/redis/database/{database.id}")).json()
        hidden = (await api.get(f"/redis/database/{database.id}", params={"credentials": "hide"})).json()
    assert rest_database(fetched) == database
    assert "rest_token" not in hidden and "read_only_rest_token" not in hidden and hidden["rest_url"] == database.url
    issued = local_provider.admin.issued_credentials()["tokens"]
    assert database.token in issued and database.read_only_token in issued


async def test_command_in_the_body(database: RestDatabase) -> None:
    async with database.client() as rest:
        response = await rest.post(database.url, json=["SET", "k", "v", "EX", 100])
        assert (response.status_code, response.json()) == (200, {"result": "OK"})
        assert (await rest.post(database.url, json=["GET", "k"])).json() == {"result": "v"}
        assert (await rest.post(database.url, json=["GET", "missing"])).json() == {"result": None}
        assert (await rest.post(database.url, json=["INCRBY", "n", 5])).json() == {"result": 5}
        assert (await rest.post(database.url, json=["RPUSH", "list", "a", "b"])).json() == {"result": 2}
        assert (await rest.post(database.url, json=["LRANGE", "list", 0, -1])).json() == {"result": ["a", "b"]}
        assert (await rest.post(database.url, json=["HSET", "h", "f", 1.5])).json() == {"result": 1}
        assert (await rest.post(database.url, json=["HGETALL", "h"])).json() == {"result": ["f", "1.5"]}

        failed = await rest.post(database.url, json=["INCR", "k"])
        assert failed.status_code == 400
        assert failed.json() == {"error": "ERR value is not an integer or out of range"}
        wrong_type = await rest.post(database.url, json=["LPUSH", "k", "x"])
        assert wrong_type.status_code == 400 and wrong_type.json()["error"].startswith("WRONGTYPE ")
        for bad in ([], ["SET", "k", None], {"command": "GET"}, ["SET", "k", True]):
            response = await rest.post(database.url, json=bad)
            assert response.status_code == 400 and response.json()["error"].startswith("ERR "), bad
        response = await rest.post(database.url, json=["SUBSCRIBE", "channel"])
        assert response.status_code == 400 and "not available" in response.json()["error"]
    async with redis_client(database.port, database.password, tls=True) as client:
        assert 0 < await client.ttl("k") <= 100


async def test_path_style(database: RestDatabase) -> None:
    async with database.client() as rest:
        assert (await rest.get(f"{database.url}/set/greeting/hello")).json() == {"result": "OK"}
        assert (await rest.get(f"{database.url}/get/greeting")).json() == {"result": "hello"}
        assert (await rest.post(f"{database.url}/GET/greeting")).json() == {"result": "hello"}
        # A POST body is the last argument, raw (JSON or binary); query parameters follow it.
        document = '{"a": [1, 2], "path": "x/y"}'
        response = await rest.post(f"{database.url}/set/doc", content=document, params={"EX": "60"})
        assert response.json() == {"result": "OK"}
        assert (await rest.get(f"{database.url}/get/doc")).json() == {"result": document}
        assert 0 < (await rest.get(f"{database.url}/ttl/doc")).json()["result"] <= 60
        # An escaped slash stays inside its argument.
        assert (await rest.get(f"{database.url}/set/a%2Fb/c%20d")).json() == {"result": "OK"}
        assert (await rest.get(f"{database.url}/mget/a%2Fb/greeting/nothing")).json() == {
            "result": ["c d", "hello", None]
        }
        assert (await rest.delete(f"{database.url}/get/greeting")).status_code == 405
    # The token may also travel as ?_token=.
    async with httpx.AsyncClient(timeout=30) as anonymous:
        response = await anonymous.get(f"{database.url}/get/greeting", params={"_token": database.token})
        assert response.json() == {"result": "hello"}


async def test_pipeline(database: RestDatabase) -> None:
    commands = [["SET", "key1", "valuex"], ["SETEX", "key2", 13, "valuez"], ["INCR", "key1"], ["ZADD", "z", 11, "a"]]
    async with database.client() as rest:
        response = await rest.post(f"{database.url}/pipeline", json=commands)
        assert response.status_code == 200
        assert response.json() == [
            {"result": "OK"},
            {"result": "OK"},
            {"error": "ERR value is not an integer or out of range"},
            {"result": 1},
        ]
        for bad in ([], ["GET", "k"], [["GET", "k"], "GET"]):
            assert (await rest.post(f"{database.url}/pipeline", json=bad)).status_code == 400, bad
    async with redis_client(database.port, database.password, tls=True) as client:
        assert await client.get("key2") == "valuez"


async def test_multi_exec(database: RestDatabase) -> None:
    async with database.client() as rest:
        response = await rest.post(
            f"{database.url}/multi-exec", json=[["SET", "t", "1"], ["INCR", "t"], ["LPUSH", "t", "x"], ["GET", "t"]]
        )
        assert response.status_code == 200
        [first, second, third, fourth] = response.json()
        assert (first, second, fourth) == ({"result": "OK"}, {"result": 2}, {"result": "2"})
        assert third["error"].startswith("WRONGTYPE ")  # runtime errors do not stop the transaction, as in Redis

        # A transaction Redis refuses to queue is discarded as a whole: one error, nothing applied.
        discarded = await rest.post(f"{database.url}/multi-exec", json=[["SET", "t", "changed"], ["NOSUCHCMD"]])
        assert discarded.status_code == 400
        assert discarded.json()["error"].startswith("ERR unknown command")
        assert (await rest.post(database.url, json=["GET", "t"])).json() == {"result": "2"}
        refused = await rest.post(f"{database.url}/multi-exec", json=[["SET", "t", "3"], ["WATCH", "t"]])
        assert refused.status_code == 400 and "not available" in refused.json()["error"]


async def test_base64_encoding(database: RestDatabase) -> None:
    binary = bytes(range(256))
    async with redis_client(database.port, database.password, tls=True) as client:
        await client.set("bin", binary)
    headers = {"Upstash-Encoding": "base64"}
    async with database.client() as rest:
        assert (await rest.post(database.url, json=["SET", "s", "bar"], headers=headers)).json() == {"result": "OK"}
        assert (await rest.post(database.url, json=["GET", "s"], headers=headers)).json() == {"result": "YmFy"}
        encoded = (await rest.post(database.url, json=["GET", "bin"], headers=headers)).json()["result"]
        assert base64.b64decode(encoded) == binary
        assert (await rest.post(database.url, json=["STRLEN", "s"], headers=headers)).json() == {"result": 3}
        piped = await rest.post(f"{database.url}/pipeline", json=[["GET", "s"], ["MGET", "s", "none"]], headers=headers)
        assert piped.json() == [{"result": "YmFy"}, {"result": ["YmFy", None]}]
        # Without the header, invalid UTF-8 is replaced rather than failing.
        plain = (await rest.post(database.url, json=["GET", "bin"])).json()["result"]
        assert "\ufffd" in plain
        unsupported = await rest.post(database.url, json=["GET", "s"], headers={"Upstash-Response-Format": "resp2"})
        assert unsupported.status_code == 400


async def test_bad_token_and_unknown_database(local_provider: LocalProvider, database: RestDatabase) -> None:
    async with httpx.AsyncClient(timeout=30) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {database.token}"}):
            response = await anonymous.post(database.url, json=["GET", "k"], headers=headers)
            assert response.status_code == 401 and response.json()["error"].startswith("WRONGPASS"), headers
        response = await anonymous.get(f"{database.url}/get/k", params={"_token": database.token + "x"})
        assert response.status_code == 401
        unknown = await anonymous.post(
            f"{local_provider.url}/rest/{uuid.uuid4()}", json=["GET", "k"], headers={"Authorization": "Bearer x"}
        )
        assert unknown.status_code == 404


async def test_read_only_token_refuses_writes(database: RestDatabase) -> None:
    async with database.client() as rest:
        await rest.post(database.url, json=["SET", "k", "v"])
    async with database.client(database.read_only_token) as read_only:
        assert (await read_only.post(database.url, json=["GET", "k"])).json() == {"result": "v"}
        assert (await read_only.get(f"{database.url}/exists/k")).json() == {"result": 1}
        assert (await read_only.post(database.url, json=["PING"])).json() == {"result": "PONG"}
        for command in (["SET", "k", "w"], ["DEL", "k"], ["CONFIG", "SET", "maxmemory", "1"], ["KEYS", "*"]):
            refused = await read_only.post(database.url, json=command)
            assert refused.status_code == 400, command
            assert refused.json()["error"].startswith("NOPERM "), command
        assert (await read_only.post(database.url, json=["EVAL", "return 1", 0])).status_code == 400
        assert (await read_only.post(database.url, json=["EVAL_RO", "return 1", 0])).json() == {"result": 1}
        piped = await read_only.post(f"{database.url}/pipeline", json=[["GET", "k"], ["SET", "k", "w"], ["GET", "k"]])
        [got, refused_set, again] = piped.json()
        assert got == again == {"result": "v"} and refused_set["error"].startswith("NOPERM ")
        transaction = await read_only.post(f"{database.url}/multi-exec", json=[["GET", "k"], ["SET", "k", "w"]])
        assert transaction.status_code == 400 and transaction.json()["error"].startswith("NOPERM ")
    async with redis_client(database.port, database.password, tls=True) as client:
        assert await client.get("k") == "v"


async def test_reset_password_rotates_both_tokens(local_provider: LocalProvider, database: RestDatabase) -> None:
    async with database.client() as rest:
        await rest.post(database.url, json=["SET", "kept", "yes"])
    async with upstash(local_provider) as api:
        response = await api.post(f"/redis/reset-password/{database.id}")
        assert response.status_code == 200
        rotated = rest_database(response.json())
    assert rotated.url == database.url
    assert rotated.token != database.token and rotated.read_only_token != database.read_only_token
    async with database.client() as old, database.client(database.read_only_token) as old_read_only:
        assert (await old.post(database.url, json=["GET", "kept"])).status_code == 401
        assert (await old_read_only.post(database.url, json=["GET", "kept"])).status_code == 401
    async with rotated.client() as new, rotated.client(rotated.read_only_token) as new_read_only:
        assert (await new.post(database.url, json=["GET", "kept"])).json() == {"result": "yes"}
        assert (await new_read_only.post(database.url, json=["GET", "kept"])).json() == {"result": "yes"}
        assert (await new.post(database.url, json=["SET", "after", "reset"])).json() == {"result": "OK"}
    async with redis_client(rotated.port, rotated.password, tls=True) as client:
        assert await client.get("after") == "reset"
    issued = local_provider.admin.issued_credentials()["tokens"]
    assert {database.token, rotated.token, rotated.read_only_token} <= set(issued)


async def test_rest_and_redis_protocol_share_the_data(database: RestDatabase) -> None:
    async with database.client() as rest, redis_client(database.port, database.password, tls=True) as client:
        await rest.post(database.url, json=["HSET", "user:1", "name", "Ada", "lang", "en"])
        assert await client.hgetall("user:1") == {"name": "Ada", "lang": "en"}
        await client.set("from-redis", "hello over TCP")
        await client.sadd("set", "x")
        assert (await rest.get(f"{database.url}/get/from-redis")).json() == {"result": "hello over TCP"}
        assert (await rest.post(database.url, json=["SMEMBERS", "set"])).json() == {"result": ["x"]}


async def test_calls_are_counted_and_faults_do_not_apply(local_provider: LocalProvider, database: RestDatabase) -> None:
    local_provider.admin.reset_counters()
    local_provider.admin.faults(fail_next=5, fail_status=503)
    async with database.client() as rest:
        assert (await rest.post(database.url, json=["PING"])).json() == {"result": "PONG"}
        assert (await rest.post(f"{database.url}/pipeline", json=[["PING"]])).status_code == 200
        assert (await rest.post(f"{database.url}/multi-exec", json=[["PING"]])).status_code == 200
    assert local_provider.admin.faults()["fail_next"] == 5, "the REST calls consumed no injected failure"
    calls = local_provider.admin.counters()
    assert calls["rest:command"] == 1 and calls["rest:pipeline"] == 1 and calls["rest:multi-exec"] == 1


async def test_tokens_and_data_survive_a_provider_restart(own_local_provider: LocalProvider) -> None:
    local_provider = own_local_provider  # restarted below: not the session's provider
    async with upstash(local_provider) as api:
        body = {"database_name": unique("rest-restart"), "region": "global", "primary_region": "eu-west-1"}
        database = rest_database((await api.post("/redis/database", json=body)).json())
    async with database.client() as rest:
        assert (await rest.post(database.url, json=["SET", "durable", "yes"])).json() == {"result": "OK"}

    local_provider.restart()

    async with upstash(local_provider) as api:
        assert rest_database((await api.get(f"/redis/database/{database.id}")).json()) == database
    async with database.client() as rest, database.client(database.read_only_token) as read_only:
        assert (await rest.post(database.url, json=["GET", "durable"])).json() == {"result": "yes"}
        assert (await read_only.get(f"{database.url}/get/durable")).json() == {"result": "yes"}
    async with upstash(local_provider) as api:
        await api.delete(f"/redis/database/{database.id}")
    async with database.client() as rest:
        assert (await rest.post(database.url, json=["GET", "durable"])).status_code == 404


def _legacy_state(state_dir: Path, record: dict[str, Any]) -> None:
    """A state directory as written before REST tokens: the original two tables, user_version 0."""
    state_dir.mkdir(parents=True)
    db = sqlite3.connect(state_dir / "registry.sqlite3")
    db.execute("CREATE TABLE databases (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE issued_passwords "
        "(database_id TEXT NOT NULL, name TEXT NOT NULL, password TEXT NOT NULL, issued_at REAL NOT NULL)"
    )
    db.execute("INSERT INTO databases (id, body) VALUES (?, ?)", (record["id"], json.dumps(record)))
    db.commit()
    db.close()


def _legacy_record(api: str, owner: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "api": api,
        "owner": owner,
        "name": unique("legacy"),
        "primary_region": "us-east-1" if api == "upstash" else "cdg",
        "plan": "payg",
        "password": uuid.uuid4().hex,
        "creation_time": 1700000000,
        "read_regions": [],
        "eviction": False,
        "budget": None,
        "metadata": {},
        "port": 0,
        "replica_ports": {},
    }


def test_store_migration_adds_token_columns(tmp_path: Path) -> None:
    record = _legacy_record("upstash", UPSTASH_EMAIL)
    _legacy_state(tmp_path / "state", record)
    store = Store(tmp_path / "state" / "registry.sqlite3")
    try:
        [loaded] = store.load()
        assert loaded.id == record["id"] and loaded.password == record["password"]
        assert loaded.rest_token == "" and loaded.read_only_rest_token == ""
        loaded.rest_token, loaded.read_only_rest_token = "standard", "read-only"
        store.save(loaded)
        [again] = store.load()
        assert (again.rest_token, again.read_only_rest_token) == ("standard", "read-only")
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "state" / "registry.sqlite3")
    (version,) = db.execute("PRAGMA user_version").fetchone()
    (body,) = db.execute("SELECT body FROM databases").fetchone()
    db.close()
    assert version == SCHEMA_VERSION
    assert "standard" not in body, "tokens live in their columns only"
    Store(tmp_path / "state" / "registry.sqlite3").close()  # opening a migrated store again changes nothing


async def test_databases_from_before_rest_tokens_get_them_on_restore(tmp_path: Path) -> None:
    upstash_record = _legacy_record("upstash", UPSTASH_EMAIL)
    fly_record = _legacy_record("fly", "personal")
    _legacy_state(tmp_path / "state", upstash_record)
    db = sqlite3.connect(tmp_path / "state" / "registry.sqlite3")
    db.execute("INSERT INTO databases (id, body) VALUES (?, ?)", (fly_record["id"], json.dumps(fly_record)))
    db.commit()
    db.close()
    with running_local_provider(tmp_path) as provider:
        async with upstash(provider) as api:
            database = rest_database((await api.get(f"/redis/database/{upstash_record['id']}")).json())
        assert database.password == upstash_record["password"] and database.token
        async with database.client() as rest:
            assert (await rest.post(database.url, json=["SET", "k", "v"])).json() == {"result": "OK"}
        async with httpx.AsyncClient(timeout=30) as anonymous:
            fly_rest = await anonymous.post(
                f"{provider.url}/rest/{fly_record['id']}", json=["GET", "k"], headers={"Authorization": "Bearer x"}
            )
            assert fly_rest.status_code == 404, "Fly databases have no REST API"
        assert database.token in provider.admin.issued_credentials()["tokens"]


async def test_access_log_never_shows_a_token_or_path_style_data(tmp_path: Path) -> None:
    with running_local_provider(tmp_path, extra_args=["--access-log"]) as provider:
        async with upstash(provider) as api:
            body = {"database_name": unique("logged"), "region": "global", "primary_region": "us-east-1"}
            database = rest_database((await api.post("/redis/database", json=body)).json())
        async with httpx.AsyncClient(timeout=30) as anonymous:
            response = await anonymous.get(
                f"{database.url}/set/visible-key/secret-value", params={"_token": database.token}
            )
            assert response.json() == {"result": "OK"}

        async def logged() -> bool:
            """aiohttp writes the access line after the answer is sent: wait for it, do not race it."""
            return f"/rest/{database.id}/set" in provider.log_text()

        await eventually(logged, within=30)
        log = provider.log_text()
    assert database.token not in log and "secret-value" not in log and "visible-key" not in log
