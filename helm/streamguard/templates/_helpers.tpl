{{/*
Names. Kubernetes names are at most 63 characters; KubeRay further limits RayCluster names to 53
(it appends `-head-svc`) and RayJob names to 47 (it appends a suffix for the job's cluster), and
both must be DNS-1035 labels (start with a letter).
src/streamguard/deploy/rayjob.py mirrors these templates for `streamguard submit`; a test renders
both and compares them.
*/}}
{{- define "streamguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamguard.fullname" -}}
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

{{- define "streamguard.dns1035" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "%q is not a valid KubeRay name (lower-case letters, digits and '-', starting with a letter): set fullnameOverride" .) }}
{{- end }}
{{- . }}
{{- end }}

{{- define "streamguard.clusterName" -}}
{{- include "streamguard.fullname" . | trunc 53 | trimSuffix "-" | include "streamguard.dns1035" }}
{{- end }}

{{/* dict "root" $ "suffix" "train" */}}
{{- define "streamguard.jobName" -}}
{{- $base := include "streamguard.fullname" .root | trunc (int (sub 46 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix | include "streamguard.dns1035" }}
{{- end }}

{{/* dict "root" $ "suffix" "autoscaler": `<fullname>-<suffix>` within 63 characters. */}}
{{- define "streamguard.suffixedName" -}}
{{- printf "%s-%s" (include "streamguard.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "streamguard.configMapName" -}}
{{- printf "%s-config" (include "streamguard.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "streamguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "streamguard.labels" -}}
helm.sh/chart: {{ include "streamguard.chart" . }}
{{ include "streamguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "streamguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference. dict "root" $ "override" <group image map>. A group that sets `tag` or `digest`
uses its own pair, so a digest pinned for the CPU image never leaks into the CUDA group.
*/}}
{{- define "streamguard.image" -}}
{{- $img := .root.Values.image }}
{{- $o := .override | default dict }}
{{- $repo := $o.repository | default $img.repository }}
{{- $tag := $img.tag }}
{{- $digest := $img.digest }}
{{- if or (hasKey $o "tag") (hasKey $o "digest") }}
{{- $tag = $o.tag | default "" }}
{{- $digest = $o.digest | default "" }}
{{- end }}
{{- if $digest }}
{{- printf "%s@%s" $repo $digest }}
{{- else }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}
{{- end }}

{{/*
The run config (`run.yaml`): runConfig.config with the chart-level settings written over it.
The ConfigMap holds exactly this; `streamguard.config.load(preset, config_file=run.yaml)` reads it.
*/}}
{{- define "streamguard.runConfig" -}}
{{- $derived := dict }}
{{- if .Values.job.runName }}
{{- $_ := set $derived "run" (dict "name" .Values.job.runName) }}
{{- end }}
{{- if .Values.storage.uri }}
{{- $_ := set $derived "run" (merge (dict "storage_path" .Values.storage.uri) ($derived.run | default dict)) }}
{{- end }}
{{- $storage := dict }}
{{- with .Values.storage.endpointUrl }}{{ $_ := set $storage "endpoint_url" . }}{{ end }}
{{- with .Values.storage.region }}{{ $_ := set $storage "region" . }}{{ end }}
{{- if $storage }}{{ $_ := set $derived "storage" $storage }}{{ end }}
{{- if not (kindIs "invalid" .Values.metrics.appPort) }}
{{- $_ := set $derived "metrics" (dict "prometheus_port" (int64 .Values.metrics.appPort)) }}
{{- end }}
{{- $cfg := mustMergeOverwrite (deepCopy (.Values.runConfig.config | default dict)) $derived }}
{{- if $cfg }}{{ toYaml $cfg }}{{ else }}{}{{ end }}
{{- end }}

{{/* Environment shared by every Ray container: S3 settings, credentials by reference only. */}}
{{- define "streamguard.env" -}}
{{- $s := .Values.storage }}
{{- if $s.region }}
- name: AWS_REGION
  value: {{ $s.region | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ $s.region | quote }}
{{- end }}
{{- if $s.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ $s.endpointUrl | quote }}
{{- end }}
{{- with $s.credentials }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- if .sessionTokenKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .sessionTokenKey }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "streamguard.podLabels" -}}
{{ include "streamguard.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "streamguard.volumes" -}}
- name: run-config
  configMap:
    name: {{ include "streamguard.configMapName" . }}
{{- if .Values.sharedMemory }}
- name: shared-mem
  emptyDir:
    medium: Memory
{{- end }}
{{- end }}

{{- define "streamguard.volumeMounts" -}}
- name: run-config
  mountPath: {{ .Values.runConfig.mountPath }}
  readOnly: true
{{- if .Values.sharedMemory }}
- name: shared-mem
  mountPath: /dev/shm
{{- end }}
{{- end }}

{{- define "streamguard.metricsPorts" -}}
- name: metrics
  containerPort: {{ .Values.metrics.exportPort | int64 }}
  protocol: TCP
{{- if not (kindIs "invalid" .Values.metrics.appPort) }}
- name: sg-metrics
  containerPort: {{ .Values.metrics.appPort | int64 }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* The RayCluster spec: the long-running RayCluster and every inline RayJob cluster share it. */}}
{{- define "streamguard.rayClusterSpec" -}}
{{- $root := . }}
{{- $env := include "streamguard.env" . -}}
rayVersion: {{ .Values.rayVersion | quote }}
enableInTreeAutoscaling: {{ .Values.cluster.autoscaling }}
{{- if .Values.cluster.autoscaling }}
autoscalerOptions:
  upscalingMode: {{ .Values.cluster.autoscaler.upscalingMode }}
  idleTimeoutSeconds: {{ .Values.cluster.autoscaler.idleTimeoutSeconds | int64 }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  resources:
    {{- toYaml .Values.cluster.autoscaler.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
{{- end }}
headGroupSpec:
  serviceType: ClusterIP
  rayStartParams:
    {{- toYaml (merge (deepCopy .Values.head.rayStartParams) (dict "dashboard-host" "0.0.0.0" "metrics-export-port" (toString (int64 .Values.metrics.exportPort)))) | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "streamguard.podLabels" (dict "root" . "component" "ray-head" "extra" .Values.head.labels) | nindent 8 }}
      {{- with .Values.head.annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- if or .Values.serviceAccount.create .Values.serviceAccount.name }}
      serviceAccountName: {{ include "streamguard.serviceAccountName" . }}
      {{- end }}
      # Only the autoscaler sidecar talks to the Kubernetes API.
      automountServiceAccountToken: {{ .Values.cluster.autoscaling }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.podSecurityContext | nindent 8 }}
      {{- with .Values.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.head.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ include "streamguard.image" (dict "root" .) }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: gcs-server
              containerPort: 6379
              protocol: TCP
            - name: dashboard
              containerPort: 8265
              protocol: TCP
            - name: client
              containerPort: 10001
              protocol: TCP
            {{- include "streamguard.metricsPorts" . | nindent 12 }}
          env:
            {{- if $env }}
            {{- $env | nindent 12 }}
            {{- end }}
            # Node-death detection (GCS system config, read from the head's environment).
            - name: RAY_health_check_period_ms
              value: {{ .Values.head.nodeHealthCheck.periodMs | int64 | quote }}
            - name: RAY_health_check_failure_threshold
              value: {{ .Values.head.nodeHealthCheck.failureThreshold | int64 | quote }}
          resources:
            {{- toYaml .Values.head.resources | nindent 12 }}
          securityContext:
            {{- toYaml .Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "streamguard.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "streamguard.volumes" . | nindent 8 }}
{{- $groups := list }}
{{- range $name, $g := .Values.workerGroups }}{{ if $g.enabled }}{{ $groups = append $groups $name }}{{ end }}{{ end }}
{{- if not $groups }}
workerGroupSpecs: []
{{- else }}
workerGroupSpecs:
{{- range $name := $groups }}
{{- $g := get $root.Values.workerGroups $name }}
  - groupName: {{ $name }}
    replicas: {{ $g.replicas | int64 }}
    minReplicas: {{ $g.minReplicas | int64 }}
    maxReplicas: {{ $g.maxReplicas | int64 }}
    rayStartParams:
      {{- toYaml (merge (deepCopy ($g.rayStartParams | default dict)) (dict "metrics-export-port" (toString (int64 $root.Values.metrics.exportPort)))) | nindent 6 }}
    template:
      metadata:
        labels:
          {{- include "streamguard.podLabels" (dict "root" $root "component" "ray-worker" "extra" $g.labels) | nindent 10 }}
        {{- with $g.annotations }}
        annotations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
      spec:
        {{- if or $root.Values.serviceAccount.create $root.Values.serviceAccount.name }}
        serviceAccountName: {{ include "streamguard.serviceAccountName" $root }}
        {{- end }}
        automountServiceAccountToken: false
        # Time for the preStop hook to checkpoint after a spot notice, drain or eviction.
        terminationGracePeriodSeconds: {{ $root.Values.spotNotice.terminationGracePeriodSeconds | int64 }}
        {{- with $root.Values.imagePullSecrets }}
        imagePullSecrets:
          {{- range . }}
          - name: {{ . }}
          {{- end }}
        {{- end }}
        securityContext:
          {{- toYaml $root.Values.podSecurityContext | nindent 10 }}
        {{- with $g.nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $g.tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $g.affinity }}
        affinity:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ include "streamguard.image" (dict "root" $root "override" $g.image) }}
            imagePullPolicy: {{ $root.Values.image.pullPolicy }}
            ports:
              {{- include "streamguard.metricsPorts" $root | nindent 14 }}
            {{- if $env }}
            env:
              {{- $env | nindent 14 }}
            {{- end }}
            lifecycle:
              preStop:
                exec:
                  command:
                    - python
                    - -m
                    - streamguard.deploy.prestop
                    - --wait-seconds
                    - {{ $root.Values.spotNotice.checkpointWaitSeconds | int64 | quote }}
            resources:
              {{- toYaml $g.resources | nindent 14 }}
            securityContext:
              {{- toYaml $root.Values.securityContext | nindent 14 }}
            volumeMounts:
              {{- include "streamguard.volumeMounts" $root | nindent 14 }}
        volumes:
          {{- include "streamguard.volumes" $root | nindent 10 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A RayJob. dict "root" $ "kind" "train"|"sweep" "spec" <job or sweep values> "entrypoint" <command>
*/}}
{{- define "streamguard.rayJob" -}}
{{- $root := .root }}
{{- $spec := .spec }}
{{- if and $spec.useCluster (not $root.Values.cluster.enabled) }}
{{- fail (printf "%s.useCluster needs cluster.enabled=true (the RayJob selects this release's RayCluster)" .kind) }}
{{- end }}
{{- if and (not $spec.useCluster) (not $spec.shutdownAfterJobFinishes) (gt (int $spec.ttlSecondsAfterFinished) 0) }}
{{- fail (printf "%s.ttlSecondsAfterFinished > 0 needs %s.shutdownAfterJobFinishes=true (KubeRay rejects it otherwise)" .kind .kind) }}
{{- end }}
apiVersion: ray.io/v1
kind: RayJob
metadata:
  name: {{ include "streamguard.jobName" (dict "root" $root "suffix" .kind) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "streamguard.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .kind }}
    streamguard/preset: {{ $spec.preset }}
spec:
  entrypoint: {{ .entrypoint | quote }}
  submissionMode: {{ $spec.submissionMode }}
  backoffLimit: {{ $spec.backoffLimit | int64 }}
  {{- if not (kindIs "invalid" $spec.activeDeadlineSeconds) }}
  activeDeadlineSeconds: {{ $spec.activeDeadlineSeconds | int64 }}
  {{- end }}
  {{- with $spec.runtimeEnv }}
  runtimeEnvYAML: {{ toJson . | quote }}
  {{- end }}
  {{- if $spec.useCluster }}
  clusterSelector:
    ray.io/cluster: {{ include "streamguard.clusterName" $root }}
  {{- else }}
  shutdownAfterJobFinishes: {{ $spec.shutdownAfterJobFinishes }}
  ttlSecondsAfterFinished: {{ $spec.ttlSecondsAfterFinished | int64 }}
  rayClusterSpec:
    {{- include "streamguard.rayClusterSpec" $root | nindent 4 }}
  {{- end }}
  {{- if eq $spec.submissionMode "K8sJobMode" }}
  # KubeRay injects the `ray job submit` command into this container.
  submitterPodTemplate:
    metadata:
      labels:
        {{- include "streamguard.podLabels" (dict "root" $root "component" "ray-job-submitter") | nindent 8 }}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: ray-job-submitter
          image: {{ include "streamguard.image" (dict "root" $root) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          resources:
            {{- toYaml $root.Values.submitter.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
  {{- end }}
{{- end }}

{{/*
The sweep's name: its directory under the storage URI; resubmitting the same name restores it.
*/}}
{{- define "streamguard.sweepName" -}}
{{- .Values.sweep.runName | default (printf "%s-sweep" .Values.sweep.preset) -}}
{{- end }}
