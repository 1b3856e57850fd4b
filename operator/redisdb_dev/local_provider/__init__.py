"""The embedded local provider: the Upstash v2 and Fly GraphQL wire APIs over one registry of real redis-servers.

It exists so the operator, its adapters and the end-to-end tests run against the same wire shapes as the real
services (docs/wire-contract.md) without an account: each database is a real ``redis-server`` process, each
read region a real replica.
"""
