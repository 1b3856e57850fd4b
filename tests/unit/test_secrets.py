"""The connection Secret is rendered whole, owned by its RedisDatabase, keyed for envFrom, and written only when
missing or changed (secret_action), never over a Secret someone else owns."""

from __future__ import annotations

import re
from typing import Any

import pytest

from redisdb_operator.errors import ConfigurationError
from redisdb_operator.kube import KubeConflict
from redisdb_operator.providers.base import Database
from redisdb_operator.secrets import (
    ANNOTATION_CONTENT_HASH,
    SecretAction,
    SecretOutcome,
    SecretPublisher,
    SecretTarget,
    connection_data,
    decode_data,
    is_owned_by,
    label_value,
    render_connection_secret,
    secret_action,
)

DATABASE = Database(
    id="db-1",
    name="shop-cache",
    primary_region="mad",
    plan="payg",
    host="fly-shop-cache.upstash.io",
    port=6379,
    password="s3cret",
    url="redis://default:s3cret@fly-shop-cache.upstash.io:6379",
)


def test_keys_for_envfrom_without_rest_when_absent() -> None:
    assert connection_data(DATABASE) == {
        "REDIS_URL": "redis://default:s3cret@fly-shop-cache.upstash.io:6379",
        "REDIS_HOST": "fly-shop-cache.upstash.io",
        "REDIS_PORT": "6379",
        "REDIS_PASSWORD": "s3cret",
    }


def test_rest_keys_when_the_provider_gives_them() -> None:
    with_rest = DATABASE.model_copy(update={"rest_url": "https://x.upstash.io", "rest_token": "tok"})
    data = connection_data(with_rest)
    assert data["UPSTASH_REDIS_REST_URL"] == "https://x.upstash.io"
    assert data["UPSTASH_REDIS_REST_TOKEN"] == "tok"


def test_rendered_secret_is_owned_labelled_and_round_trips() -> None:
    secret = render_connection_secret(
        secret_name="cache-redis", namespace="shop", owner_name="cache", owner_uid="uid-1", database=DATABASE
    )
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["redisdb.dev/database"] == "cache"
    assert is_owned_by(secret, "uid-1") and not is_owned_by(secret, "uid-2")
    assert decode_data(secret) == connection_data(DATABASE)
    rotated = render_connection_secret(
        secret_name="cache-redis",
        namespace="shop",
        owner_name="cache",
        owner_uid="uid-1",
        database=DATABASE.model_copy(update={"password": "new"}),
    )
    assert (
        rotated["metadata"]["annotations"][ANNOTATION_CONTENT_HASH]
        != secret["metadata"]["annotations"][ANNOTATION_CONTENT_HASH]
    )


def test_repr_of_a_database_never_shows_credentials() -> None:
    text = repr(DATABASE) + str(DATABASE)
    assert "s3cret" not in text


def rendered(database: Database = DATABASE, owner_uid: str = "uid-1") -> dict[str, Any]:
    return SecretTarget("cache-redis", "shop", "cache", owner_uid).render(database)


def stored(secret: dict[str, Any]) -> dict[str, Any]:
    return {**secret, "metadata": {**secret["metadata"], "resourceVersion": "7"}}


@pytest.mark.parametrize(
    ("existing", "wanted", "action"),
    [
        (None, rendered(), SecretAction.CREATE),
        (stored(rendered()), rendered(), SecretAction.LEAVE),
        (stored(rendered()), rendered(DATABASE.model_copy(update={"password": "new"})), SecretAction.REPLACE),
        (stored(rendered(owner_uid="someone-else")), rendered(), SecretAction.CONFLICT),
        ({"metadata": {"name": "cache-redis"}, "data": {}}, rendered(), SecretAction.CONFLICT),  # no owner at all
        (stored(rendered()), None, SecretAction.LEAVE),  # no credentials at hand: ours stands
        (None, None, SecretAction.NEED_CREDENTIALS),
        (stored(rendered(owner_uid="someone-else")), None, SecretAction.CONFLICT),
    ],
)
def test_secret_action(existing: dict[str, Any] | None, wanted: dict[str, Any] | None, action: SecretAction) -> None:
    assert secret_action(existing, wanted, "uid-1") is action


def test_a_hand_edited_value_with_the_old_hash_is_replaced() -> None:
    edited = stored(rendered())
    edited["data"] = {**edited["data"], "REDIS_PASSWORD": "aGFja2Vk"}
    assert secret_action(edited, rendered(), "uid-1") is SecretAction.REPLACE


class SecretStore:
    """The Secret verbs of the Kubernetes API, with the apiserver's 409 on a taken name."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    async def get(self, path: str) -> dict[str, Any] | None:
        self.calls.append("get")
        return self.objects.get(path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        key = f"{path}/{body['metadata']['name']}"
        if key in self.objects:
            raise KubeConflict(409, "already exists")
        self.objects[key] = stored(body)
        return self.objects[key]

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("replace")
        self.objects[path] = body
        return body


async def test_the_publisher_creates_first_after_a_create_and_reads_credentials_only_when_needed() -> None:
    kube = SecretStore()
    publisher = SecretPublisher(kube)  # type: ignore[arg-type]
    target = SecretTarget("cache-redis", "shop", "cache", "uid-1")
    reads: list[str] = []

    async def read_credentials() -> Database:
        reads.append("get")
        return DATABASE.model_copy(update={"password": "rotated", "url": "redis://default:rotated@h:6379"})

    assert await publisher.publish(target, DATABASE, likely_absent=True, read_credentials=read_credentials) == (
        SecretOutcome.CREATED
    )
    assert kube.calls == ["create"]
    without_password = DATABASE.model_copy(update={"password": "", "url": ""})
    outcome = await publisher.publish(target, without_password, likely_absent=False, read_credentials=read_credentials)
    assert outcome is SecretOutcome.UNCHANGED and reads == []
    outcome = await publisher.publish(target, DATABASE, likely_absent=True, read_credentials=read_credentials)
    assert outcome is SecretOutcome.UNCHANGED and kube.calls[-2:] == ["create", "get"]  # 409, then compared
    foreign = SecretTarget("cache-redis", "shop", "cache", "uid-2")
    with pytest.raises(ConfigurationError, match="not owned by this RedisDatabase"):
        await publisher.publish(foreign, DATABASE, likely_absent=False, read_credentials=read_credentials)
    kube.objects.clear()
    outcome = await publisher.publish(target, without_password, likely_absent=False, read_credentials=read_credentials)
    assert outcome is SecretOutcome.CREATED and reads == ["get"]
    assert decode_data(kube.objects["/api/v1/namespaces/shop/secrets/cache-redis"])["REDIS_PASSWORD"] == "rotated"


def test_a_name_longer_than_a_label_value_is_shortened_and_stays_distinct() -> None:
    """RedisDatabase names may have 253 characters, label values 63: the Secret's label must still be valid."""
    longest = "a" * 250 + "-xy"
    other = "a" * 250 + "-xz"
    value = label_value(longest)
    assert len(value) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value)
    assert value != label_value(other)
    assert label_value("cache") == "cache"
    secret = render_connection_secret(
        secret_name="s", namespace="shop", owner_name=longest, owner_uid="uid-1", database=DATABASE
    )
    assert secret["metadata"]["labels"]["redisdb.dev/database"] == value
