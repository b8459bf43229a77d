-- Argo CD actions for phasegate.dev/ProgressiveRollout: which apply to the rollout now.
local actions = {}
local state = "Pending"
if obj.status ~= nil and obj.status.state ~= nil then
  state = obj.status.state
end
local active = state == "Progressing" or state == "Holding" or state == "Paused"
  or state == "WaitingForApproval" or state == "Scheduled"
-- After a NO-GO only retry (or a new revision) goes on.
local rejected = state == "Holding" and obj.status.holdReason == "Rejected"
actions["pause"] = {["disabled"] = rejected or not (state == "Progressing" or state == "Holding")}
actions["resume"] = {["disabled"] = rejected or not (state == "Paused" or state == "Holding")}
actions["promote"] = {["disabled"] = rejected or not active}
actions["promote-full"] = {["disabled"] = rejected or not active}
actions["abort"] = {["disabled"] = state == "RolledBack" or state == "Succeeded"}
actions["retry"] = {["disabled"] = not (state == "RolledBack" or state == "Holding" or state == "Degraded")}
-- One approve action per group the next gated phase still waits for; a reject action
-- (NO-GO) per group of that gate.
local waiting = {}
local approver = {}
if obj.spec ~= nil and obj.spec.phases ~= nil then
  local next_index = 1
  if obj.status ~= nil and obj.status.currentPhase ~= nil and obj.status.currentPhase.index ~= nil then
    next_index = obj.status.currentPhase.index + 2
  end
  local phase = obj.spec.phases[next_index]
  if phase ~= nil and phase.approval ~= nil and phase.approval.required ~= nil then
    for _, group in ipairs(phase.approval.required) do
      approver[group] = true
      local done = false
      if obj.status ~= nil and obj.status.approvals ~= nil then
        for _, given in ipairs(obj.status.approvals) do
          -- Older records carry the group in `by`.
          local given_group = given.group
          if given_group == nil or given_group == "" then given_group = given.by end
          if given.phase == phase.name and given_group == group then done = true end
        end
      end
      if not done then waiting[group] = true end
    end
  end
end
for _, group in ipairs({ __APPROVERS__ }) do
  actions["approve-" .. group] = {["disabled"] = not (waiting[group] == true)}
  actions["reject-" .. group] = {["disabled"] = rejected or not active or approver[group] ~= true}
end
return actions
