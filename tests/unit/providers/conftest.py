"""respx intercepts here at httpx's transport selection, not at httpcore's pool: the adapters send through
aiohttp (redisdb_operator.aiohttp_transport), so a request mocked at httpcore would reach the network instead."""

import respx.mocks

respx.mocks.DEFAULT_MOCKER = "httpx"
