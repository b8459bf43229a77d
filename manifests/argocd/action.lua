-- Argo CD action: ask phasegate for {ACTION} through a control annotation, the same
-- mechanism as `kubectl phasegate`. The operator applies it once and removes it.
local stamp = os.date("!%Y%m%dt%H%M%S")
local body = '{"action":"{ACTION}","by":"{BY}"'
local phase = nil
if "{ACTION}" == "approve" and obj.spec ~= nil and obj.spec.phases ~= nil then
  local next_index = 1
  if obj.status ~= nil and obj.status.currentPhase ~= nil and obj.status.currentPhase.index ~= nil then
    next_index = obj.status.currentPhase.index + 2
  end
  if obj.spec.phases[next_index] ~= nil then
    phase = obj.spec.phases[next_index].name
  end
end
if phase ~= nil then
  body = body .. ',"phase":"' .. phase .. '"'
end
body = body .. '}'
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["control.phasegate.dev/argocd-{NAME}-" .. stamp] = body
return obj
