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
Name of the Secret holding DATABASE_URL.
*/}}
{{- define "drw.databaseSecretName" -}}
{{- default (printf "%s-database" (include "drw.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "drw.kafkaTlsDir" -}}/etc/delivery-receipts-worker/kafka-tls{{- end }}
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
{{- end }}

{{/*
Environment shared by the worker, the migration and the API containers.
*/}}
{{- define "drw.commonEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "drw.databaseSecretName" . }}
      key: {{ .Values.database.urlKey }}
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
