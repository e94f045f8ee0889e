-- Argo CD health of cloudsnap's kinds, from the conditions the operator keeps (kstatus conventions).
-- A CloudSnapshot or CloudSnapshotRestore is healthy once Ready; a CloudSnapshotSchedule while it
-- runs as its spec asks (Synced: its first run may be a day away, so Ready may still be False).
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
local ready = found["Ready"]
if obj.kind == "CloudSnapshotSchedule" then
  local synced = found["Synced"]
  if synced ~= nil and synced.status == "True" then
    return {status = "Healthy", message = ready ~= nil and ready.message or synced.message or ""}
  end
  return hs
end
if ready ~= nil and ready.status == "True" then
  local reconciling = found["Reconciling"]
  if reconciling ~= nil and reconciling.status == "True" then
    return {status = "Progressing", message = reconciling.reason .. ": " .. (reconciling.message or "")}
  end
  return {status = "Healthy", message = ready.message or ""}
end
if ready ~= nil then
  hs.message = ready.reason .. ": " .. (ready.message or "")
end
return hs
