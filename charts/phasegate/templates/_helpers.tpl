{{- define "phasegate.name" -}}phasegate{{- end -}}

{{- define "phasegate.fullname" -}}
{{- if contains "phasegate" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-phasegate" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "phasegate.labels" -}}
app.kubernetes.io/name: phasegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "phasegate.selector" -}}
app.kubernetes.io/name: phasegate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "phasegate.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "phasegate.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* The namespaces Roles go to in namespaced mode. */}}
{{- define "phasegate.roleNamespaces" -}}
{{- if .Values.watchNamespaces -}}{{ join "," .Values.watchNamespaces }}{{- else -}}{{ .Release.Namespace }}{{- end -}}
{{- end -}}

{{/* The rules the operator needs, verb by verb, and nothing more. */}}
{{- define "phasegate.rules" -}}
# The rollouts: watched by kopf, annotations and finalizer patched; status written.
- apiGroups: [phasegate.dev]
  resources: [progressiverollouts]
  verbs: [get, list, watch, patch]
- apiGroups: [phasegate.dev]
  resources: [progressiverollouts/status]
  verbs: [patch]
# The traffic objects whose weights the operator sets and reads back, per provider enabled;
# routes are watched (list, watch), so that evaluations read them from memory.
{{- $providers := .Values.rbac.trafficProviders }}
{{- if has "gatewayAPI" $providers }}
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, patch]
{{- end }}
{{- if has "istio" $providers }}
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, patch]
{{- end }}
{{- if has "smi" $providers }}
- apiGroups: [split.smi-spec.io]
  resources: [trafficsplits]
  verbs: [get, list, watch, patch]
{{- end }}
{{- if has "nginx" $providers }}
# NGINX: the operator makes the canary Ingress beside the stable one and deletes it after;
# Ingresses of other names are only read (the stable one), never changed.
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
# Promotion: the stable Deployment takes the canary's template; the canary scales down.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, patch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Events on the rollouts (phase changes, holds, rollbacks, completion).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.sharedNotificationReceivers }}
# Notifications: receivers shared by a namespace or the cluster, read only from this ConfigMap.
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [phasegate-notifications]
  verbs: [get]
{{- end }}
{{- if .Values.rbac.phaseReports }}
# Phase reports (spec.notifications.reports.configMaps): ConfigMaps the operator creates, owned
# by their rollout; an existing one is patched only when the patch's test finds that owner.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]
{{- end }}
{{- with .Values.rbac.secretNames }}
# Prometheus credentials, only the Secrets named in values.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson . }}
  verbs: [get]
{{- end }}
{{- end -}}

{{/* The peering of each shard (one peering when not sharded), comma-separated. */}}
{{- define "phasegate.peerings" -}}
{{- $shards := int .Values.shards -}}
{{- if gt $shards 1 -}}
{{- $names := list -}}
{{- range $i := until $shards -}}
{{- $names = append $names (printf "%s-shard-%d" $.Values.peering.name $i) -}}
{{- end -}}
{{- join "," $names -}}
{{- else -}}
{{- .Values.peering.name -}}
{{- end -}}
{{- end -}}
