{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "drw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else "<release>-<name>" (just the release name when it already
contains the chart name). Truncated to 63 characters, the DNS label limit.
*/}}
{{- define "drw.fullname" -}}
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

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "drw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "drw.labels" -}}
helm.sh/chart: {{ include "drw.chart" . }}
app.kubernetes.io/name: {{ include "drw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: delivery-receipts
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the pods of one component: the selector labels, the version and chart labels, the
common labels and podLabels. Call with (dict "ctx" $ "component" "worker"). Built as one map, so
a key given twice (e.g. in commonLabels and podLabels) is written once; the selector labels win.
*/}}
{{- define "drw.podLabels" -}}
{{- $ctx := .ctx -}}
{{- $labels := dict -}}
{{- range $k, $v := $ctx.Values.commonLabels }}{{ $_ := set $labels $k $v }}{{ end -}}
{{- range $k, $v := $ctx.Values.podLabels }}{{ $_ := set $labels $k $v }}{{ end -}}
{{- $_ := set $labels "helm.sh/chart" (include "drw.chart" $ctx) -}}
{{- $_ := set $labels "app.kubernetes.io/version" ($ctx.Values.image.tag | default $ctx.Chart.AppVersion | toString) -}}
{{- $_ := set $labels "app.kubernetes.io/managed-by" $ctx.Release.Service -}}
{{- $_ := set $labels "app.kubernetes.io/part-of" "delivery-receipts" -}}
{{- $_ := set $labels "app.kubernetes.io/name" (include "drw.name" $ctx) -}}
{{- $_ := set $labels "app.kubernetes.io/instance" $ctx.Release.Name -}}
{{- $_ := set $labels "app.kubernetes.io/component" .component -}}
{{- toYaml $labels }}
{{- end }}

{{/*
Selector labels of one component: call with (dict "ctx" $ "component" "worker").
*/}}
{{- define "drw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drw.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of the ServiceAccount of the pods.
*/}}
{{- define "drw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, or repository@digest when a digest is given.
*/}}
{{- define "drw.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the common DATABASE_URL.
*/}}
{{- define "drw.databaseSecretName" -}}
{{- default (printf "%s-database" (include "drw.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/*
The Secret and key of one component's DATABASE_URL ("migrate", "worker" or "api"), each
falling back to the common database.existingSecret / database.urlKey. Returns "<name> <key>".
*/}}
{{- define "drw.databaseSecretRef" -}}
{{- $own := get .ctx.Values.database .component | default dict -}}
{{- printf "%s %s" ($own.existingSecret | default (include "drw.databaseSecretName" .ctx)) ($own.urlKey | default .ctx.Values.database.urlKey) -}}
{{- end }}

{{- define "drw.kafkaTlsDir" -}}/etc/delivery-receipts-worker/kafka-tls{{- end }}
{{- define "drw.apiAuthDir" -}}/etc/delivery-receipts-worker/api-auth{{- end }}
{{- define "drw.postgresCaDir" -}}/etc/delivery-receipts-worker/postgres-ca{{- end }}

{{/*
Checks of combinations the schema cannot express; rendering fails with the reason.
*/}}
{{- define "drw.validate" -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.worker.shutdownGraceSeconds) }}
{{- fail "terminationGracePeriodSeconds must be greater than worker.shutdownGraceSeconds, or Kubernetes kills the worker while it drains" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA manages an HPA of its own" }}
{{- end }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- if not .Values.kafka.sasl.mechanism }}
{{- fail "kafka.sasl.mechanism is required with a SASL_* kafka.securityProtocol" }}
{{- end }}
{{- if not .Values.kafka.sasl.existingSecret }}
{{- fail "kafka.sasl.existingSecret (a Secret with the SASL username and password) is required with a SASL_* kafka.securityProtocol" }}
{{- end }}
{{- end }}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.existingSecret is required when kafka.tls.enabled is true" }}
{{- end }}
{{- if and .Values.kafka.tls.enabled (not (hasSuffix "SSL" .Values.kafka.securityProtocol)) }}
{{- fail "kafka.tls.enabled needs kafka.securityProtocol SSL or SASL_SSL" }}
{{- end }}
{{- if ne (empty .Values.kafka.tls.certKey) (empty .Values.kafka.tls.keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey must be set together (mutual TLS)" }}
{{- end }}
{{- if and .Values.keda.enabled (eq .Values.keda.trigger "prometheus") (not .Values.keda.prometheusServerAddress) }}
{{- fail "keda.prometheusServerAddress is required with keda.trigger=prometheus" }}
{{- end }}
{{- if .Values.api.enabled }}
{{- $auth := .Values.api.auth }}
{{- if and $auth.disabled $auth.existingSecret }}
{{- fail "api.auth.disabled=true and api.auth.existingSecret are exclusive: choose open mode or credentials" }}
{{- end }}
{{- if not (or $auth.disabled $auth.existingSecret (include "drw.apiHasOwnCredentials" .)) }}
{{- fail "the API refuses to start without credentials: set api.auth.existingSecret (a Secret with a credentials file) or, behind an authenticating proxy, api.auth.disabled=true" }}
{{- end }}
{{- end }}
{{- if and .Values.api.ingress.enabled (not .Values.api.enabled) }}
{{- fail "api.ingress.enabled needs api.enabled=true" }}
{{- end }}
{{- if and .Values.api.ingress.enabled (not .Values.api.ingress.hosts) }}
{{- fail "api.ingress.hosts needs at least one host when api.ingress.enabled is true" }}
{{- end }}
{{- if and .Values.api.autoscaling.enabled (lt (int .Values.api.autoscaling.maxReplicas) (int .Values.api.autoscaling.minReplicas)) }}
{{- fail "api.autoscaling.maxReplicas must be at least api.autoscaling.minReplicas" }}
{{- end }}
{{- $probes := dict "livenessProbe" .Values.livenessProbe "readinessProbe" .Values.readinessProbe "startupProbe" (.Values.startupProbe | default dict) "api.livenessProbe" .Values.api.livenessProbe "api.readinessProbe" .Values.api.readinessProbe }}
{{- range $name, $probe := $probes }}
{{- if $probe }}
{{- $handlers := 0 }}
{{- range (list "httpGet" "tcpSocket" "exec" "grpc") }}{{ if get $probe . }}{{ $handlers = add1 $handlers }}{{ end }}{{ end }}
{{- if ne (int $handlers) 1 }}
{{- fail (printf "%s needs exactly one of httpGet, tcpSocket, exec or grpc (values are merged with the defaults: set the default handler to null, e.g. httpGet: null, to use another)" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $down := .Values.prometheusRule.alerts.DeliveryReceiptsWorkerDown }}
{{- if and .Values.prometheusRule.enabled $down.enabled (not $down.selector) (not .Values.serviceMonitor.enabled) }}
{{- fail "prometheusRule.alerts.DeliveryReceiptsWorkerDown would always fire: its default selector is the job of the chart's ServiceMonitor. Set serviceMonitor.enabled=true, or the selector of your own scrape job (prometheusRule.alerts.DeliveryReceiptsWorkerDown.selector), or disable the alert" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- end }}

{{/*
"true" when the API's credentials come from api.extraEnv or api.extraEnvFrom instead of
api.auth (API_AUTH_ACCOUNT_SID/API_AUTH_TOKEN or API_CREDENTIALS_FILE set by hand, or any
envFrom source, which the chart cannot see into).
*/}}
{{- define "drw.apiHasOwnCredentials" -}}
{{- $found := false }}
{{- range .Values.api.extraEnv }}
{{- if has .name (list "API_AUTH_TOKEN" "API_CREDENTIALS_FILE" "API_AUTH_DISABLED") }}{{ $found = true }}{{ end }}
{{- end }}
{{- if or $found .Values.api.extraEnvFrom }}true{{ end }}
{{- end }}

{{/*
API_PUBLIC_BASE_URL: api.publicBaseUrl, else the first Ingress host (https when a TLS entry
lists it), else empty.
*/}}
{{- define "drw.apiPublicBaseUrl" -}}
{{- if .Values.api.publicBaseUrl }}
{{- .Values.api.publicBaseUrl }}
{{- else if and .Values.api.ingress.enabled .Values.api.ingress.hosts }}
{{- $host := (first .Values.api.ingress.hosts).host }}
{{- $tls := false }}
{{- range .Values.api.ingress.tls }}{{ if has $host (.hosts | default list) }}{{ $tls = true }}{{ end }}{{ end }}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host }}
{{- end }}
{{- end }}

{{/*
Environment shared by the worker, the migration and the API containers. Call with
(dict "ctx" $ "component" "worker"); the component ("migrate", "worker", "api") picks the
database credentials.
*/}}
{{- define "drw.commonEnv" -}}
{{- $db := include "drw.databaseSecretRef" . | splitList " " }}
{{- with .ctx }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $db 0 }}
      key: {{ index $db 1 }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: INPUT_TOPIC
  value: {{ .Values.kafka.inputTopic | quote }}
- name: SUMMARY_TOPIC
  value: {{ .Values.kafka.summaryTopic | quote }}
- name: DLQ_TOPIC
  value: {{ .Values.kafka.dlqTopic | quote }}
- name: CONSUMER_GROUP
  value: {{ .Values.kafka.consumerGroup | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
{{- if .Values.kafka.tls.caKey }}
- name: KAFKA_SSL_CAFILE
  value: {{ printf "%s/%s" (include "drw.kafkaTlsDir" .) .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- if .Values.kafka.tls.certKey }}
- name: KAFKA_SSL_CERTFILE
  value: {{ printf "%s/%s" (include "drw.kafkaTlsDir" .) .Values.kafka.tls.certKey | quote }}
- name: KAFKA_SSL_KEYFILE
  value: {{ printf "%s/%s" (include "drw.kafkaTlsDir" .) .Values.kafka.tls.keyKey | quote }}
{{- end }}
{{- end }}
- name: LOG_LEVEL
  value: {{ .Values.worker.logLevel | quote }}
{{- end }}
{{- end }}

{{/*
Volumes shared by all pods: /tmp, and the TLS material.
*/}}
{{- define "drw.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if .Values.database.tls.rootCertSecret }}
- name: postgres-ca
  secret:
    secretName: {{ .Values.database.tls.rootCertSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.database.tls.rootCertKey }}
        path: {{ .Values.database.tls.rootCertKey }}
{{- end }}
{{- end }}

{{- define "drw.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: {{ include "drw.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.database.tls.rootCertSecret }}
- name: postgres-ca
  mountPath: {{ include "drw.postgresCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by the worker, migration and API pods (serviceAccountName aside).
*/}}
{{- define "drw.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Soft anti-affinity spreading one component's pods over nodes, unless affinity is given.
*/}}
{{- define "drw.affinity" -}}
{{- if .ctx.Values.affinity -}}
affinity:
  {{- toYaml .ctx.Values.affinity | nindent 2 }}
{{- else -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "drw.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end }}

{{/*
The fields every alert shares, from .Values.prometheusRule.alerts.<name>: `for`, the labels
(prometheusRule.additionalRuleLabels, then the alert's severity, then its own labels, each
winning over the one before) and the start of the annotations with the runbook_url. Call with
(dict "ctx" $ "name" "<alert name>").
*/}}
{{- define "drw.alertCommon" -}}
{{- $pr := .ctx.Values.prometheusRule -}}
{{- $alert := index $pr.alerts .name -}}
{{- $labels := dict -}}
{{- range $k, $v := $pr.additionalRuleLabels }}{{ $_ := set $labels $k $v }}{{ end -}}
{{- $_ := set $labels "severity" $alert.severity -}}
{{- range $k, $v := $alert.labels }}{{ $_ := set $labels $k $v }}{{ end -}}
for: {{ $alert.for }}
labels:
  {{- toYaml $labels | nindent 2 }}
annotations:
  runbook_url: {{ printf "%s#%s" $pr.runbookBaseUrl (lower .name) }}
{{- end }}
