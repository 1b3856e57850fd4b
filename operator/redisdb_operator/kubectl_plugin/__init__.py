"""`kubectl redisdb`, the kubectl plugin installed with the package (console script `kubectl-redisdb`)."""
