"""redisdb-operator: Upstash Redis databases (via Fly.io or Upstash) as Kubernetes RedisDatabase resources."""

__version__ = "0.1.0"
