-- Argo CD health of a CloudSnapshotSchedule: healthy while it runs as its spec asks (its first
-- run may be a day away), degraded while its spec cannot run or a source is blocked.
if obj.spec ~= nil and obj.spec.suspend == true then
  return {status = "Suspended", message = "spec.suspend is true"}
end
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "the operator has not seen this spec yet"
  return hs
end
local found = {}
for _, condition in ipairs(obj.status.conditions or {}) do
  found[condition.type] = condition
end
local stalled = found["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = stalled.reason .. ": " .. (stalled.message or "")}
end
local synced = found["Synced"]
if synced ~= nil and synced.status == "True" then
  local ready = found["Ready"]
  return {status = "Healthy", message = ready ~= nil and ready.message or synced.message or ""}
end
return hs
