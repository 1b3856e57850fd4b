"""spec.connectionSecret beyond the name (issue 17 item 1): templated keys, the spec's labels and annotations, and
the labels and annotations others add to the Secret kept across a rewrite, with the content hash deciding it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from redisdb_operator.admission import validate_redisdatabase
from redisdb_operator.models import ConnectionSecretSpec, RedisDatabaseSpec, secret_template_problem
from redisdb_operator.providers.base import Database
from redisdb_operator.secrets import (
    ANNOTATION_CONTENT_HASH,
    SecretAction,
    connection_data,
    keep_foreign_metadata,
    render_connection_secret,
    render_template,
    secret_action,
    template_fields,
)

FLY = Database(
    id="db-1",
    name="shop-cache",
    primary_region="cdg",
    plan="payg",
    host="h.upstash.io",
    port=6379,
    password="pw",
    url="redis://default:pw@h.upstash.io:6379",
)
UPSTASH = FLY.model_copy(update={"rest_url": "https://h.upstash.io", "rest_token": "tok", "read_only_rest_token": "ro"})


def shape(**fields: Any) -> ConnectionSecretSpec:
    return ConnectionSecretSpec.model_validate(fields)


@pytest.mark.parametrize(
    ("template", "database", "value"),
    [
        ("{url}", FLY, "redis://default:pw@h.upstash.io:6379"),
        ("redis://{host}:{port}", FLY, "redis://h.upstash.io:6379"),
        ("rediss://:{password}@{host}:{port}/0", FLY, "rediss://:pw@h.upstash.io:6379/0"),
        ("{{literal}} {host}", FLY, "{literal} h.upstash.io"),
        ("plain text", FLY, "plain text"),
        ("", FLY, ""),
        ("{readOnlyRestToken}", UPSTASH, "ro"),
        ("{restUrl}", FLY, None),  # Fly gives no REST endpoint: the key is left out
    ],
)
def test_render_template(template: str, database: Database, value: str | None) -> None:
    assert render_template(template, template_fields(database)) == value


def test_keys_are_added_or_replace_the_defaults() -> None:
    added = connection_data(FLY, shape(keys={"SPRING_DATA_REDIS_URL": "{url}", "REDIS_PORT": "p{port}"}))
    assert added["SPRING_DATA_REDIS_URL"] == FLY.url and added["REDIS_HOST"] == "h.upstash.io"
    assert added["REDIS_PORT"] == "p6379"  # a key of the spec wins over the default of that name
    renamed = connection_data(
        UPSTASH, shape(defaultKeys=False, keys={"CACHE_URL": "{url}", "RO": "{readOnlyRestToken}"})
    )
    assert renamed == {"CACHE_URL": FLY.url, "RO": "ro"}
    assert connection_data(FLY, shape(defaultKeys=False, keys={"REST": "{restUrl}"})) == {}
    assert connection_data(FLY, shape()) == connection_data(FLY)


@pytest.mark.parametrize(
    ("key", "template", "fragment"),
    [
        ("URL", "{uri}", "spec.connectionSecret.keys.URL: '{uri}' is not a template"),
        ("URL", "redis://{host", "fix the template"),
        ("URL", "{host}}", "fix the template"),
        ("MY URL", "{url}", "spec.connectionSecret.keys.MY URL: 'MY URL' is not a Secret key"),
        ("a/b", "{url}", "rename the key"),
    ],
)
def test_bad_templates_are_refused_naming_the_key_and_the_fix(key: str, template: str, fragment: str) -> None:
    problem = secret_template_problem(key, template)
    assert problem is not None and fragment in problem
    with pytest.raises(ValidationError, match=r"spec\.connectionSecret\.keys"):
        RedisDatabaseSpec.model_validate({"primaryRegion": "cdg", "connectionSecret": {"keys": {key: template}}})
    refused = validate_redisdatabase(
        operation="CREATE",
        namespace="shop",
        name="cache",
        spec={"primaryRegion": "cdg", "connectionSecret": {"keys": {key: template}}},
        old_spec=None,
        providers={},
        claims={},
    )
    assert refused is not None and fragment in refused


def render(database: Database = FLY, **fields: Any) -> dict[str, Any]:
    return render_connection_secret(
        secret_name="cache-redis",
        namespace="shop",
        owner_name="cache",
        owner_uid="uid-1",
        database=database,
        shape=shape(**fields) if fields else None,
    )


def test_the_spec_labels_and_annotations_sit_under_the_operators_own() -> None:
    secret = render(labels={"team": "shop", "app.kubernetes.io/managed-by": "me"}, annotations={"reloader": "x"})
    labels, annotations = secret["metadata"]["labels"], secret["metadata"]["annotations"]
    assert labels == {
        "team": "shop",
        "app.kubernetes.io/managed-by": "redisdb-operator",
        "redisdb.dev/database": "cache",
    }
    assert annotations["reloader"] == "x" and ANNOTATION_CONTENT_HASH in annotations


def test_the_hash_covers_the_spec_metadata_but_not_without_it() -> None:
    plain, labelled = render(), render(labels={"team": "shop"})
    plain_hash = plain["metadata"]["annotations"][ANNOTATION_CONTENT_HASH]
    assert render(labels={})["metadata"]["annotations"][ANNOTATION_CONTENT_HASH] == plain_hash  # no churn on upgrade
    assert labelled["metadata"]["annotations"][ANNOTATION_CONTENT_HASH] != plain_hash
    assert secret_action(plain, labelled, "uid-1") is SecretAction.REPLACE  # a new spec label is a rewrite
    assert secret_action(labelled, render(labels={"team": "shop"}), "uid-1") is SecretAction.LEAVE


def test_a_rewrite_keeps_what_others_put_on_the_secret() -> None:
    existing = render(labels={"team": "shop"})
    existing["metadata"]["labels"]["backup"] = "daily"  # added by someone else
    existing["metadata"]["annotations"]["reloader.stakater.com/last"] = "abc"
    rotated = render(FLY.model_copy(update={"password": "new"}), labels={"team": "shop"})
    assert secret_action(existing, rotated, "uid-1") is SecretAction.REPLACE
    merged = keep_foreign_metadata(existing, rotated)
    assert merged["metadata"]["labels"]["backup"] == "daily" and merged["metadata"]["labels"]["team"] == "shop"
    assert merged["metadata"]["annotations"]["reloader.stakater.com/last"] == "abc"
    assert (
        merged["metadata"]["annotations"][ANNOTATION_CONTENT_HASH]
        == rotated["metadata"]["annotations"][ANNOTATION_CONTENT_HASH]
    )
    assert merged["data"] == rotated["data"] and "backup" not in rotated["metadata"]["labels"]


def test_the_reloader_example_parses_and_renders() -> None:
    import pathlib

    import yaml

    documents = list(
        yaml.safe_load_all((pathlib.Path(__file__).parents[2] / "examples/app-with-reloader.yaml").read_text())
    )
    spec = RedisDatabaseSpec.model_validate(documents[0]["spec"])
    assert spec.connection_secret is not None
    data = connection_data(FLY, spec.connection_secret)
    assert data["SPRING_DATA_REDIS_URL"] == FLY.url and data["CELERY_BROKER_URL"] == "rediss://:pw@h.upstash.io:6379/0"
    deployment = documents[1]
    assert deployment["metadata"]["annotations"]["secret.reloader.stakater.com/reload"] == spec.connection_secret.name
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": spec.connection_secret.name}}]
