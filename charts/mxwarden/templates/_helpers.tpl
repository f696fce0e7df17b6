{{/* Names and labels shared by every template. */}}

{{- define "mxwarden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's Deployment, Service, roles and (by default) ServiceAccount. */}}
{{- define "mxwarden.operatorName" -}}
{{- printf "%s-operator" (include "mxwarden.fullname" .) -}}
{{- end -}}

{{- define "mxwarden.serviceAccountName" -}}
{{- default (include "mxwarden.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "mxwarden.selectorLabels" -}}
app.kubernetes.io/name: mxwarden-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mxwarden.labels" -}}
{{ include "mxwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mxwarden
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mxwarden.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mxwarden.relayImage" -}}
{{- printf "%s:%s" .Values.relayImage.repository (default .Chart.AppVersion .Values.relayImage.tag) -}}
{{- end -}}

{{/* The Lease name is fixed in the operator (operator/src/controller/operator.ts). */}}
{{- define "mxwarden.leaseName" -}}
mxwarden-operator
{{- end -}}
