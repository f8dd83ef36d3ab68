-- Argo CD health check of tokens.apitoken.dev/APIToken: the value of
-- resource.customizations.health.tokens.apitoken.dev_APIToken in argocd-cm.
-- See docs/health-checks.md. Argo CD runs it with gopher-lua (Lua 5.1); the tests
-- run it with lua5.4; it uses nothing the two disagree on.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local c = {}
for _, cond in ipairs(obj.status.conditions) do
  c[cond.type] = cond
end
-- A condition set for the current spec and True.
local function true_now(cond)
  return cond ~= nil and cond.status == "True" and cond.observedGeneration == generation
end
if true_now(c.Stalled) then
  return {status = "Degraded", message = c.Stalled.message}
end
if true_now(c.Revoked) then
  return {status = "Suspended", message = c.Revoked.message}
end
if true_now(c.Expired) then
  return {status = "Degraded", message = c.Expired.message}
end
if true_now(c.Ready) and obj.status.observedGeneration == generation then
  return {status = "Healthy", message = c.Ready.message}
end
-- Not served yet: say why only when Ready speaks of the current spec (a retried
-- error); an older Ready would describe the spec before the edit.
if c.Ready ~= nil and c.Ready.message ~= nil and c.Ready.observedGeneration == generation then
  hs.message = c.Ready.message
end
return hs
