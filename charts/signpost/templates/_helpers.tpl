{{- define "signpost.name" -}}
{{- printf "signpost-%s" .Values.program | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signpost.fullname" -}}
{{- printf "%s-%s" .Release.Name (include "signpost.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signpost.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signpost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "signpost.labels" -}}
{{ include "signpost.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "signpost.configFile" -}}
{{- if eq .Values.program "endpoint" -}}endpoint.toml{{- else -}}forward.toml{{- end -}}
{{- end -}}

{{- define "signpost.listenAddress" -}}
{{- if eq .Values.mode "daemonset" -}}{{ .Values.daemonset.localAddress }}{{- else -}}0.0.0.0{{- end -}}
{{- end -}}

{{- define "signpost.dnsPort" -}}
{{- if eq .Values.mode "daemonset" -}}53{{- else -}}{{ .Values.dnsPort }}{{- end -}}
{{- end -}}

{{/* The pod: the same for both modes but for the network. */}}
{{- define "signpost.podSpec" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- if eq .Values.mode "daemonset" }}
hostNetwork: true
dnsPolicy: Default
{{- if .Values.daemonset.createInterface }}
initContainers:
  - name: link-local-address
    image: busybox:1.37
    command:
      - sh
      - -c
      - ip link show nodelocaldns >/dev/null 2>&1 || ip link add nodelocaldns type dummy; ip addr replace {{ .Values.daemonset.localAddress }}/32 dev nodelocaldns; ip link set nodelocaldns up
    securityContext:
      runAsNonRoot: false
      runAsUser: 0
      capabilities:
        drop: [ALL]
        add: [NET_ADMIN]
{{- end }}
{{- end }}
containers:
  - name: {{ .Values.program }}
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["/usr/local/bin/signpost-{{ .Values.program }}"]
    args: ["--config", "/etc/signpost/{{ include "signpost.configFile" . }}", "--watch-config"
      {{- if eq .Values.program "endpoint" }}, "--ready-require-upstream={{ .Values.readyRequiresUpstream }}"{{ end }}]
    ports:
      - {name: dns, containerPort: {{ include "signpost.dnsPort" . }}, protocol: UDP}
      - {name: dns-tcp, containerPort: {{ include "signpost.dnsPort" . }}, protocol: TCP}
      - {name: health, containerPort: {{ .Values.healthPort }}, protocol: TCP}
      - {name: ready, containerPort: {{ .Values.readyPort }}, protocol: TCP}
      - {name: metrics, containerPort: {{ .Values.metricsPort }}, protocol: TCP}
    livenessProbe:
      httpGet: {path: /health, port: {{ .Values.healthPort }}}
      initialDelaySeconds: 5
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 5
    readinessProbe:
      httpGet: {path: /ready, port: {{ .Values.readyPort }}}
      periodSeconds: 2
      timeoutSeconds: 2
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      readOnlyRootFilesystem: true
      capabilities:
        drop: [ALL]
        {{- if eq .Values.mode "daemonset" }}
        add: [NET_BIND_SERVICE]
        {{- end }}
      {{- if eq .Values.mode "daemonset" }}
      # Port 53 as uid 65532 comes from the binaries' file capability,
      # which the kernel honours only where privilege escalation is allowed.
      allowPrivilegeEscalation: true
      {{- else }}
      allowPrivilegeEscalation: false
      {{- end }}
    volumeMounts:
      - {name: config, mountPath: /etc/signpost, readOnly: true}
      - {name: tmp, mountPath: /tmp}
      {{- if .Values.dnstap.enabled }}
      - {name: dnstap, mountPath: /run/dnstap}
      {{- if .Values.dnstap.tls.secretName }}
      - {name: dnstap-tls, mountPath: /etc/signpost-dnstap, readOnly: true}
      {{- end }}
      {{- end }}
  {{- if and .Values.dnstap.enabled .Values.dnstap.sidecar }}
  - {{- toYaml (omit .Values.dnstap.sidecar "volumeMounts") | nindent 4 }}
    volumeMounts:
      - {name: dnstap, mountPath: /run/dnstap}
      {{- with .Values.dnstap.sidecar.volumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "signpost.fullname" . }}
  - name: tmp
    emptyDir: {}
  {{- if .Values.dnstap.enabled }}
  - name: dnstap
    emptyDir: {}
  {{- with .Values.dnstap.tls.secretName }}
  - name: dnstap-tls
    secret:
      secretName: {{ . }}
  {{- end }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
