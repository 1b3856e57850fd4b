-- Argo CD health of redisdb.dev/RedisDatabase (redisdb-operator).
-- The operator keeps two conditions, each with observedGeneration (operator/redisdb_operator/reconcile.py):
--   Ready  - the database is usable and its connection Secret is written;
--   Synced - the last reconcile succeeded; False with a permanent reason (reconcile.PERMANENT_REASONS) waits for a
--            spec change, any other reason is retried with backoff.
-- Healthy: Ready=True and Synced=True for the current generation. Degraded: Synced=False for the current generation
-- with a permanent reason, or with a credentials reason (provider_checks.CREDENTIAL_REASONS: retried, but only a
-- person fixing the RedisProvider's Secret ends it). Everything else (no status yet, creating, updating, retrying
-- a provider outage) is Progressing.
-- Lua 5.1 only (Argo CD runs gopher-lua without the standard libraries).
local permanent = {
  InvalidRequest = true,
  InvalidSpec = true,
  PrimaryRegionMismatch = true,
  DatabaseIdMismatch = true,
  NameTaken = true,
  NamespaceNotAllowed = true,
  ObservedDatabaseNotFound = true,
  DeletionProtected = true,
}
local suspended = {
  Paused = true,
}
local credentials = {
  Unauthorized = true,
  CredentialsNotFound = true,
  CredentialsInvalid = true,
}

local hs = { status = "Progressing", message = "Waiting for the operator to reconcile the database" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

local ready = nil
local synced = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Synced" then
    synced = condition
  end
end

local function current(condition)
  if condition == nil then
    return false
  end
  local observed = condition.observedGeneration
  if observed == nil then
    observed = obj.status.observedGeneration
  end
  return generation == nil or observed == generation
end

local function describe(condition)
  local text = condition.reason or condition.status
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

if synced ~= nil and synced.status == "False" and suspended[synced.reason] then
  hs.status = "Suspended"
  hs.message = describe(synced)
  return hs
end

if synced ~= nil and synced.status == "False" and current(synced)
    and (permanent[synced.reason] or credentials[synced.reason]) then
  hs.status = "Degraded"
  hs.message = describe(synced)
  return hs
end

if ready ~= nil and ready.status == "True" and current(ready) and synced ~= nil and synced.status == "True"
    and current(synced) then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if synced ~= nil and synced.status == "False" then
  hs.message = "Retrying: " .. describe(synced)
  return hs
end

if ready ~= nil and not current(ready) then
  hs.message = "Updating: generation " .. tostring(generation) .. " is not reconciled yet"
  return hs
end

if ready ~= nil and ready.status ~= "True" then
  hs.message = describe(ready)
end
return hs
