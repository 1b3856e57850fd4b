"""The connection Secret is rendered whole, owned by its RedisDatabase, and keyed for envFrom."""

from __future__ import annotations

from redisdb_operator.providers.base import Database
from redisdb_operator.secrets import (
    ANNOTATION_CONTENT_HASH,
    connection_data,
    decode_data,
    is_owned_by,
    render_connection_secret,
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
