"""Development tooling for redisdb-operator, never installed with it: the local provider, the local control plane,
the benchmark and the demo. The Makefile and the tests put `operator/` on the path; the runtime package
(`redisdb_operator`) never imports from here.
"""
