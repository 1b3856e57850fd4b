{{/* Names and labels shared by every template. */}}
{{- define "redisdb-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redisdb-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "redisdb-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redisdb-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redisdb-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "redisdb-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "redisdb-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "redisdb-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "redisdb-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The webhook: Service, serving-certificate Secret and ValidatingWebhookConfiguration names. */}}
{{- define "redisdb-operator.webhookService" -}}
{{- printf "%s-webhook" (include "redisdb-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redisdb-operator.webhookCertSecret" -}}
{{- printf "%s-webhook-cert" (include "redisdb-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redisdb-operator.webhookConfiguration" -}}
{{- include "redisdb-operator.fullname" . }}
{{- end }}

{{- define "redisdb-operator.providerSecret" -}}
{{- $root := index . 0 }}{{- $provider := index . 1 }}
{{- if $provider.credentials.existingSecret }}
{{- $provider.credentials.existingSecret }}
{{- else }}
{{- printf "%s-%s-credentials" (include "redisdb-operator.fullname" $root) $provider.name | trunc 253 }}
{{- end }}
{{- end }}
