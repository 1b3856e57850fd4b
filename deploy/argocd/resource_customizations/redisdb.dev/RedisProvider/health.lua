-- Argo CD health of redisdb.dev/RedisProvider (redisdb-operator).
-- The operator keeps one condition, with observedGeneration (operator/redisdb_operator/provider_checks.py):
--   Ready - the provider API answered and accepted the credentials (reason CredentialsAccepted).
-- Healthy: Ready=True for the current generation. Degraded: Ready=False for the current generation with a
-- credentials reason (provider_checks.CREDENTIAL_REASONS: the Secret is missing, lacks a key, or the provider
-- refused it); the operator keeps checking, but only a person fixing the Secret ends it. Everything else (not
-- checked yet, a new generation, the provider unavailable or rate limiting) is Progressing.
-- Lua 5.1 only (Argo CD runs gopher-lua without the standard libraries).
local credentials = {
  Unauthorized = true,
  CredentialsNotFound = true,
  CredentialsInvalid = true,
}

local hs = { status = "Progressing", message = "Waiting for the operator to check the provider account" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  return hs
end

local observed = ready.observedGeneration
if observed == nil then
  observed = obj.status.observedGeneration
end
if generation ~= nil and observed ~= generation then
  hs.message = "Checking: generation " .. tostring(generation) .. " is not checked yet"
  return hs
end

local text = ready.reason or ready.status
if ready.message ~= nil and ready.message ~= "" then
  text = text .. ": " .. ready.message
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text
  return hs
end

if ready.status == "False" and credentials[ready.reason] then
  hs.status = "Degraded"
  hs.message = text
  return hs
end

hs.message = "Retrying: " .. text
return hs
