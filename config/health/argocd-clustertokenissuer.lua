-- Argo CD health check of tokens.apitoken.dev/ClusterTokenIssuer: the value of
-- resource.customizations.health.tokens.apitoken.dev_ClusterTokenIssuer in argocd-cm.
-- See docs/health-checks.md.
local hs = {status = "Progressing", message = "Waiting for a signing key"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local c = {}
for _, cond in ipairs(obj.status.conditions) do
  c[cond.type] = cond
end
if c.Stalled ~= nil and c.Stalled.status == "True" and c.Stalled.observedGeneration == generation then
  return {status = "Degraded", message = c.Stalled.message}
end
if c.Ready ~= nil and c.Ready.status == "True" and obj.status.observedGeneration == generation then
  local msg = c.Ready.message
  -- Lost keys were replaced already; say so without failing the sync.
  if c.KeysLost ~= nil and c.KeysLost.status == "True" then
    msg = msg .. " " .. c.KeysLost.message
  end
  return {status = "Healthy", message = msg}
end
if c.Ready ~= nil and c.Ready.message ~= nil and c.Ready.observedGeneration == generation then
  hs.message = c.Ready.message
end
return hs
