"""The Fly GraphQL face end to end, with the exact documents the adapter sends (docs/wire-contract.md)."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
from redis.exceptions import AuthenticationError, ReadOnlyError

from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType
from redisdb_operator.providers.fly import fly_authorization
from tests.harness.local_provider import LocalProvider

from .helpers import config_get, eventually, pid_alive, port_open, redis_client, replica_value, unique

FRAGMENT = """
fragment AddOn on AddOn { id name primaryRegion readRegions status options metadata publicUrl privateIp password
  hostname addOnPlan { id name displayName } organization { id slug } }
"""
ORG = "query Org($slug: String!) { organization(slug: $slug) { id slug } }"
PLANS = "query Plans { addOnPlans(type: upstash_redis) { nodes { id name displayName maxDataSize pricePerMonth } } }"
CREATE = "mutation Create($input: CreateAddOnInput!) { createAddOn(input: $input) { addOn { ...AddOn } } }" + FRAGMENT
GET = "query Get($id: ID) { addOn(id: $id) { ...AddOn } }" + FRAGMENT
GET_BY_NAME = (
    "query GetByName($name: String, $provider: String) { addOn(name: $name, provider: $provider) { ...AddOn } }"
    + FRAGMENT
)
LIST = (
    "query List($slug: String!) { organization(slug: $slug) { addOns(type: upstash_redis) { nodes { ...AddOn } } } }"
    + FRAGMENT
)
UPDATE = """mutation Update($addOnId: ID!, $planId: ID!, $readRegions: [String!]!, $options: JSON!, $metadata: JSON!) {
  updateAddOn(input: {addOnId: $addOnId, planId: $planId, readRegions: $readRegions, options: $options,
                      metadata: $metadata}) { addOn { id } } }"""
DELETE = (
    'mutation Delete($name: String) { deleteAddOn(input: {name: $name, provider: "upstash_redis"}) '
    "{ deletedAddOnName } }"
)
RESET = "mutation Reset($name: String!) { resetAddOnPassword(input: {name: $name}) { addOn { ...AddOn } } }" + FRAGMENT


class Fly:
    """A minimal GraphQL client: returns the whole response body (data and errors)."""

    def __init__(self, provider: LocalProvider, token: str | None = None) -> None:
        headers = {"Authorization": fly_authorization(token or provider.fly_token)}
        self.http = httpx.AsyncClient(base_url=provider.url, headers=headers, timeout=60)

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def create_add_on(
        self, name: str, primary: str, read_regions: list[str] | None = None, *, org_slug: str = "personal"
    ) -> dict[str, Any]:
        """A pay-as-you-go Upstash Redis add-on made through `createAddOn` (no `readRegions` sent when None)."""
        org = (await self.data(ORG, slug=org_slug))["organization"]
        wanted: dict[str, Any] = {"organizationId": org["id"], "name": name, "primaryRegion": primary}
        if read_regions is not None:
            wanted["readRegions"] = read_regions
        wanted |= {"planId": (await plan_ids(self))["payg"], "type": "upstash_redis"}
        add_on: dict[str, Any] = (await self.data(CREATE, input=wanted))["createAddOn"]["addOn"]
        return add_on

    async def aclose(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def fly(local_provider: LocalProvider) -> Any:
    client = Fly(local_provider)
    yield client
    await client.aclose()


async def plan_ids(fly: Fly) -> dict[str, str]:
    nodes = (await fly.data(PLANS))["addOnPlans"]["nodes"]
    return {catalog.canonical_plan_name(ProviderType.FLY, node["displayName"]) or "?": node["id"] for node in nodes}


def host_port(public_url: str) -> tuple[str, str, int]:
    url = httpx.URL(public_url)
    assert url.scheme == "redis" and url.username == "default"
    assert url.port is not None
    return url.password or "", url.host, url.port


async def test_fly_plans_and_org(fly: Fly, local_provider: LocalProvider) -> None:
    plans = await plan_ids(fly)
    assert plans["free"] == "x7M0gyB764ggwt6YZLRK" and plans["payg"] == "ekQ85Yjkw155ohQ5ALYq0M"
    assert set(plans) == set(catalog.PLANS[ProviderType.FLY])
    org = (await fly.data(ORG, slug=local_provider.fly_org))["organization"]
    assert org["slug"] == local_provider.fly_org and org["id"]


async def test_fly_add_on_lifecycle(fly: Fly, local_provider: LocalProvider) -> None:
    org = (await fly.data(ORG, slug=local_provider.fly_org))["organization"]
    plans = await plan_ids(fly)
    name = unique("fly-flow")
    created = (
        await fly.data(
            CREATE,
            input={
                "organizationId": org["id"],
                "name": name,
                "primaryRegion": "cdg",
                "readRegions": ["ams"],
                "planId": plans["payg"],
                "type": "upstash_redis",
            },
        )
    )["createAddOn"]["addOn"]
    add_on_id = created["id"]
    assert created["name"] == name and created["primaryRegion"] == "cdg" and created["readRegions"] == ["ams"]
    assert created["options"] == {"eviction": False} and created["status"] in ("ready", "created")
    assert created["addOnPlan"]["id"] == plans["payg"] and created["organization"]["slug"] == local_provider.fly_org
    password, host, port = host_port(created["publicUrl"])
    assert password == created["password"] and host == created["hostname"]

    async with redis_client(port, password, host=host) as client:
        await client.set("fly-key", "fly-value")
    assert (
        int(await config_get(port, password, "maxmemory"))
        == catalog.PLANS[ProviderType.FLY]["payg"].max_data_size_bytes
    )
    [replica] = local_provider.admin.database(add_on_id)["replicas"]
    assert replica["region"] == "ams" and pid_alive(replica["pid"])
    assert await eventually(lambda: replica_value(replica["port"], password, "fly-key")) == "fly-value"
    async with redis_client(replica["port"], password) as client:
        with pytest.raises(ReadOnlyError):
            await client.set("fly-key", "x")

    # Reads by id, by name and through the organization's list.
    assert (await fly.data(GET, id=add_on_id))["addOn"]["name"] == name
    assert (await fly.data(GET_BY_NAME, name=name, provider="upstash_redis"))["addOn"]["id"] == add_on_id
    nodes = (await fly.data(LIST, slug=local_provider.fly_org))["organization"]["addOns"]["nodes"]
    assert add_on_id in [node["id"] for node in nodes]
    other = (await fly.data(LIST, slug="acme"))["organization"]["addOns"]["nodes"]
    assert add_on_id not in [node["id"] for node in other]

    # One update: new read regions, fixed plan, eviction on, metadata kept.
    update = {
        "addOnId": add_on_id,
        "planId": plans["fixed_1gb"],
        "readRegions": ["lhr", "sjc"],
        "options": {"eviction": True},
        "metadata": {"managed-by": "redisdb-operator"},
    }
    assert (await fly.data(UPDATE, **update))["updateAddOn"]["addOn"]["id"] == add_on_id
    after = (await fly.data(GET, id=add_on_id))["addOn"]
    assert after["readRegions"] == ["lhr", "sjc"] and after["options"] == {"eviction": True}
    assert after["metadata"] == {"managed-by": "redisdb-operator"} and after["addOnPlan"]["id"] == plans["fixed_1gb"]
    assert await config_get(port, password, "maxmemory-policy") == "allkeys-random"
    assert int(await config_get(port, password, "maxmemory")) == catalog.GIB
    replicas = {item["region"]: item for item in local_provider.admin.database(add_on_id)["replicas"]}
    assert set(replicas) == {"lhr", "sjc"}
    assert not pid_alive(replica["pid"]) and not port_open(replica["port"])
    for item in replicas.values():
        assert await eventually(functools.partial(replica_value, item["port"], password, "fly-key")) == "fly-value"

    # A missing key keeps eviction as it is (Fly's rule); flyctl sends an explicit false to turn it off.
    update.update(options={}, readRegions=["lhr"], planId=plans["payg"])
    await fly.data(UPDATE, **update)
    assert await config_get(port, password, "maxmemory-policy") == "allkeys-random"
    update.update(options={"eviction": False})
    await fly.data(UPDATE, **update)
    assert await config_get(port, password, "maxmemory-policy") == "noeviction"
    assert [item["region"] for item in local_provider.admin.database(add_on_id)["replicas"]] == ["lhr"]
    assert not pid_alive(replicas["sjc"]["pid"])

    # Reset password by name.
    reset = (await fly.data(RESET, name=name))["resetAddOnPassword"]["addOn"]
    new_password, _, new_port = host_port(reset["publicUrl"])
    assert new_password != password and new_port == port
    with pytest.raises(AuthenticationError):
        async with redis_client(port, password) as client:
            await client.ping()
    assert await replica_value(port, new_password, "fly-key") == "fly-value"

    # Delete by name: processes gone, then the add-on is unknown.
    view = local_provider.admin.database(add_on_id)
    pids = [view["pid"], *(item["pid"] for item in view["replicas"])]
    assert (await fly.data(DELETE, name=name))["deleteAddOn"]["deletedAddOnName"] == name
    assert not any(pid_alive(pid) for pid in pids) and not port_open(port)
    missing = await fly(GET, id=add_on_id)
    assert missing["data"] == {"addOn": None}
    assert missing["errors"][0]["message"] == "Could not find AddOn"
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_fly_create_with_eviction_option_and_default_name(fly: Fly, local_provider: LocalProvider) -> None:
    org = (await fly.data(ORG, slug="acme"))["organization"]
    created = (
        await fly.data(
            CREATE,
            input={
                "organizationId": org["id"],
                "primaryRegion": "iad",
                "readRegions": [],
                "planId": (await plan_ids(fly))["fixed_250mb"],
                "type": "upstash_redis",
                "options": {"eviction": True},
            },
        )
    )["createAddOn"]["addOn"]
    assert created["name"] and created["organization"]["slug"] == "acme" and created["options"] == {"eviction": True}
    password, _, port = host_port(created["publicUrl"])
    assert await config_get(port, password, "maxmemory-policy") == "allkeys-random"
    assert int(await config_get(port, password, "maxmemory")) == 250 * catalog.MIB
    await fly.data(DELETE, name=created["name"])


async def test_fly_refuses_a_taken_name_until_its_add_on_is_deleted(fly: Fly) -> None:
    """Fly add-on names are unique in an organization: a second createAddOn of one name is refused, whether the
    first add-on was made a moment or many creates ago; the name is free again once that add-on is deleted.
    Inferred, not stated: the reference names add-ons in `addOn(name:)`, `deleteAddOn` and `resetAddOnPassword`,
    which could not pick one of two namesakes (provider-apis.md, Fly section)."""
    name = unique("taken")
    first = await fly.create_add_on(name, "fra", [])
    for _ in range(3):  # other add-ons made in between
        await fly.create_add_on(unique("other"), "fra", [])
    org = (await fly.data(ORG, slug="personal"))["organization"]
    plan = (await plan_ids(fly))["payg"]
    wanted = {
        "organizationId": org["id"],
        "name": name,
        "primaryRegion": "fra",
        "planId": plan,
        "type": "upstash_redis",
    }
    refused = await fly(CREATE, input=wanted)
    assert refused["data"]["createAddOn"] is None
    assert refused["errors"][0]["message"] == "Name has already been taken"
    assert (await fly.data(GET_BY_NAME, name=name, provider="upstash_redis"))["addOn"]["id"] == first["id"]

    assert (await fly.data(DELETE, name=name))["deleteAddOn"]["deletedAddOnName"] == name
    again = await fly.create_add_on(name, "fra", [])
    assert again["id"] != first["id"]
    assert (await fly.data(GET_BY_NAME, name=name, provider="upstash_redis"))["addOn"]["id"] == again["id"]
