-- Argo CD health check for phasegate.dev/ProgressiveRollout.
hs = {}
if obj.status == nil or obj.status.state == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for phasegate to observe the rollout"
  return hs
end
local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for phasegate to observe the latest spec"
  return hs
end
local state = status.state
local message = status.message or state
if state == "Succeeded" then
  hs.status = "Healthy"
elseif state == "RolledBack" or state == "Invalid" or state == "Degraded" then
  hs.status = "Degraded"
elseif state == "WaitingForApproval" or state == "Scheduled" or state == "Holding" or state == "Paused" then
  hs.status = "Suspended"
else
  -- Pending, Progressing, Promoting
  hs.status = "Progressing"
end
hs.message = message
return hs
