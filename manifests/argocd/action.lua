-- Argo CD action: ask phasegate for {ACTION} through a control annotation, the same
-- mechanism as `kubectl phasegate`. The operator applies it once and removes it.
-- Argo CD's server writes it as its own ServiceAccount, the user the API server sees, so
-- `by` is that ServiceAccount's name (Argo CD's RBAC decides who may run the action; its
-- audit log says who did).
local stamp = os.date("!%Y%m%dt%H%M%S")
local body = '{"action":"{ACTION}"'
if "{ACTION}" == "approve" or "{ACTION}" == "reject" then
  -- The gate of the phase after the current one (the next one to enter).
  local phase = nil
  if obj.spec ~= nil and obj.spec.phases ~= nil then
    local next_index = 1
    if obj.status ~= nil and obj.status.currentPhase ~= nil and obj.status.currentPhase.index ~= nil then
      next_index = obj.status.currentPhase.index + 2
    end
    if obj.spec.phases[next_index] ~= nil then
      phase = obj.spec.phases[next_index].name
    end
  end
  if phase == nil then
    error("no phase ahead whose gate {ACTION} could be for")
  end
  body = body .. ',"phase":"' .. phase .. '","group":"{GROUP}"'
end
-- The canonical form: keys in this order, compact, nothing escaped.
body = body .. ',"by":"{BY}"'
if "{REASON}" ~= "" then
  body = body .. ',"reason":"{REASON}"'
end
body = body .. '}'
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["control.phasegate.dev/argocd-{NAME}-" .. stamp] = body
return obj
