{{/* Names and labels. */}}
{{- define "logyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "logyard.fullname" -}}
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

{{- define "logyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "logyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "logyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: logyard
{{- end }}

{{- define "logyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "logyard.secretName" -}}
{{- default (include "logyard.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* True when pods get a Secret (made by the chart or an existing one). */}}
{{- define "logyard.hasSecret" -}}
{{- if or .Values.secret.existingSecret (and .Values.secret.create (or .Values.secret.files .Values.secret.env)) }}true{{ end }}
{{- end }}

{{- define "logyard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The storage URL logyard gets: storage.url, or a directory on the pod's volume. */}}
{{- define "logyard.storageUrl" -}}
{{- default "/var/lib/logyard/data" .Values.storage.url }}
{{- end }}

{{- define "logyard.isS3" -}}
{{- if hasPrefix "s3://" .Values.storage.url }}true{{ end }}
{{- end }}

{{/* The bucket of storage.url (s3://BUCKET/PREFIX). */}}
{{- define "logyard.storageBucket" -}}
{{- if include "logyard.isS3" . }}
{{- index (splitList "/" (trimPrefix "s3://" .Values.storage.url)) 0 }}
{{- end }}
{{- end }}

{{- define "logyard.accessLogBucket" -}}
{{- default (include "logyard.storageBucket" .) .Values.ingress.accessLogs.bucket }}
{{- end }}

{{/* Checks that values fit together; fails the render with a message otherwise. */}}
{{- define "logyard.validate" -}}
{{- $v := .Values }}
{{- if and (or $v.autoscaling.enabled (gt (int $v.replicaCount) 1)) (not (include "logyard.isS3" .)) }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs storage.url = s3://BUCKET/PREFIX: with local storage every pod would have its own tables" }}
{{- end }}
{{- if and $v.fargate.enabled (not (include "logyard.isS3" .)) }}
{{- fail "fargate.enabled needs storage.url = s3://BUCKET/PREFIX: a Fargate pod keeps no disk" }}
{{- end }}
{{- if and (include "logyard.isS3" .) (not $v.aws.region) }}
{{- fail "storage.url is on S3: set aws.region (AWS_REGION); pods cannot read it from IMDS with a hop limit of 1" }}
{{- end }}
{{- if le (int $v.terminationGracePeriodSeconds) (add $v.preStopSleepSeconds $v.shutdownGraceSeconds | int) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than preStopSleepSeconds (%v) + shutdownGraceSeconds (%v), or the kubelet kills logyard before it has committed its write-ahead log" $v.terminationGracePeriodSeconds $v.preStopSleepSeconds $v.shutdownGraceSeconds) }}
{{- end }}
{{- if and $v.pgwire.enabled (not $v.pgwire.tlsSecret) }}
{{- fail "pgwire.enabled needs pgwire.tlsSecret (a kubernetes.io/tls Secret): the password is a token, sent only over TLS" }}
{{- end }}
{{- if $v.grafana.datasource.create }}
{{- if not $v.pgwire.enabled }}
{{- fail "grafana.datasource.create needs pgwire.enabled" }}
{{- end }}
{{- if not $v.grafana.datasource.token }}
{{- fail "grafana.datasource.create needs grafana.datasource.token (a token with the query scope)" }}
{{- end }}
{{- if and (eq $v.grafana.datasource.sslmode "verify-full") (not $v.grafana.datasource.caCert) }}
{{- fail "grafana.datasource.sslmode verify-full needs grafana.datasource.caCert" }}
{{- end }}
{{- if not (has $v.grafana.datasource.sslmode (list "require" "verify-ca" "verify-full")) }}
{{- fail "grafana.datasource.sslmode is require, verify-ca or verify-full: the password must not travel in clear" }}
{{- end }}
{{- end }}
{{- if $v.ingress.enabled }}
{{- if not $v.ingress.certificateArn }}
{{- fail "ingress.enabled needs ingress.certificateArn (an ACM certificate for HTTPS)" }}
{{- end }}
{{- if and $v.ingress.accessLogs.enabled (not (include "logyard.accessLogBucket" .)) }}
{{- fail "ingress.accessLogs.enabled needs a bucket: an s3:// storage.url or ingress.accessLogs.bucket" }}
{{- end }}
{{- end }}
{{- if and $v.cronJobs.albImport.enabled (not $v.cronJobs.albImport.source) (or (not $v.aws.accountId) (not $v.aws.region) (not (include "logyard.accessLogBucket" .))) }}
{{- fail "cronJobs.albImport needs cronJobs.albImport.source, or aws.accountId, aws.region and an access-log bucket to build it from" }}
{{- end }}
{{- end }}

{{/* Where the ALB import job reads: the location the Ingress's access logs go to. */}}
{{- define "logyard.albLogSource" -}}
{{- if .Values.cronJobs.albImport.source }}
{{- .Values.cronJobs.albImport.source }}
{{- else }}
{{- $prefix := trimSuffix "/" .Values.ingress.accessLogs.prefix }}
{{- if $prefix }}
{{- printf "s3://%s/%s/AWSLogs/%v/elasticloadbalancing/%s/" (include "logyard.accessLogBucket" .) $prefix .Values.aws.accountId .Values.aws.region }}
{{- else }}
{{- printf "s3://%s/AWSLogs/%v/elasticloadbalancing/%s/" (include "logyard.accessLogBucket" .) .Values.aws.accountId .Values.aws.region }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment shared by the server and the jobs. */}}
{{- define "logyard.env" -}}
- name: LOGYARD_CONFIG
  value: /etc/logyard/config/logyard.toml
- name: LOGYARD_STORAGE_URL
  value: {{ include "logyard.storageUrl" . | quote }}
- name: LOGYARD_STORAGE_WAL_DIR
  value: /var/lib/logyard/wal
{{- if .Values.aws.region }}
- name: AWS_REGION
  value: {{ .Values.aws.region | quote }}
{{- end }}
{{- if or (hasKey .Values.secret.files "tokens.toml") .Values.secret.existingSecret }}
- name: LOGYARD_TOKENS_FILE
  value: /etc/logyard/secret/tokens.toml
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volume mounts shared by the server and the jobs (the WAL volume is added by each). */}}
{{- define "logyard.volumeMounts" -}}
- name: config
  mountPath: /etc/logyard/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "logyard.hasSecret" . }}
- name: secret
  mountPath: /etc/logyard/secret
  readOnly: true
{{- end }}
{{- if .Values.pgwire.enabled }}
- name: pgwire-tls
  mountPath: /etc/logyard/pgwire-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "logyard.volumes" -}}
- name: config
  configMap:
    name: {{ include "logyard.fullname" . }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if include "logyard.hasSecret" . }}
- name: secret
  secret:
    secretName: {{ include "logyard.secretName" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.pgwire.enabled }}
- name: pgwire-tls
  secret:
    secretName: {{ .Values.pgwire.tlsSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
