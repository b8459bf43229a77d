-- Argo CD health check for phasegate.dev/ProgressiveRelease (one revision across regions).
hs = {}
if obj.status == nil or obj.status.state == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the phasegate hub to observe the release"
  return hs
end
local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the phasegate hub to observe the latest spec"
  return hs
end
local state = status.state
local message = status.message or state
if status.progress ~= nil then
  message = "waves " .. status.progress .. ": " .. message
end
if state == "Succeeded" then
  hs.status = "Healthy"
elseif state == "Halted" or state == "RolledBack" or state == "Invalid" then
  hs.status = "Degraded"
elseif state == "WaitingForApproval" or state == "Paused" or state == "Holding" then
  -- Holding: a region cannot be seen; the release waits for it (or for a person).
  hs.status = "Suspended"
else
  -- Pending, Progressing, Baking
  hs.status = "Progressing"
end
hs.message = message
return hs
