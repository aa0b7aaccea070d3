{{/* Chart name. */}}
{{- define "frw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the MutatingWebhookConfiguration, Service, Deployment and ServiceAccount use it. */}}
{{- define "frw.fullname" -}}
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

{{- define "frw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "frw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "frw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "frw.labels" -}}
helm.sh/chart: {{ include "frw.chart" . }}
{{ include "frw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: flyte
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "frw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "frw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret holding tls.crt, tls.key and ca.crt (cert-manager: written by cert-manager; self-managed: by the webhook). */}}
{{- define "frw.certSecretName" -}}
{{- default (printf "%s-tls" (include "frw.fullname" .)) .Values.certificates.secretName }}
{{- end }}

{{- define "frw.certManager" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}true{{ end }}
{{- end }}

{{- define "frw.selfManaged" -}}
{{- if eq .Values.certificates.mode "self-managed" }}true{{ end }}
{{- end }}

{{- define "frw.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The annotation prefix of the webhook config (also used in matchConditions). */}}
{{- define "frw.annotationPrefix" -}}
{{- $default := include "frw.defaultAnnotationPrefix" . }}
{{- $p := index .Values.config "annotation-prefix" | default $default }}
{{- if or (not (regexMatch (include "frw.annotationPrefixPattern" .) $p)) (gt (len $p) 254) }}
{{- fail (printf "config.annotation-prefix %q must be a DNS subdomain followed by '/', e.g. %s" $p $default) }}
{{- end }}
{{- $p }}
{{- end }}

{{/* Config file content: the keys of .Values.config with null values dropped. */}}
{{- define "frw.configFile" -}}
{{- $cfg := dict }}
{{- range $k, $v := .Values.config }}
{{- if not (kindIs "invalid" $v) }}
{{- $_ := set $cfg $k $v }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Namespaces the webhook never sees. */}}
{{- define "frw.excludedNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq | toJson }}
{{- end }}

{{/* The helm test pod is rendered when enabled and its namespace is not excluded from the webhook. */}}
{{- define "frw.testsRendered" -}}
{{- if and .Values.tests.enabled (not (has .Values.tests.namespace (include "frw.excludedNamespaces" . | fromJsonArray))) }}true{{ end }}
{{- end }}

{{/* An alert's `for`, labels and the start of its annotations (runbook_url): (list $ "AlertName" .alerts.x). */}}
{{- define "frw.alertMeta" -}}
{{- $root := index . 0 }}{{ $name := index . 1 }}{{ $alert := index . 2 }}
{{- $rule := $root.Values.metrics.prometheusRule -}}
for: {{ $alert.for }}
labels:
  severity: {{ $alert.severity }}
  {{- with $rule.additionalAlertLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- with $rule.runbookBaseUrl }}
  runbook_url: {{ printf "%s#%s" . (lower $name) }}
  {{- end }}
{{- end }}
