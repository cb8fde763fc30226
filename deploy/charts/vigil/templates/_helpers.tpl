{{/*
Labels on every object: the app.kubernetes.io set `vigil verify` and
`vigil uninstall` select by. Call with (dict "ctx" $ "component" "sensor").
*/}}
{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod selector labels of a component. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Pod template labels: selector labels plus part-of, for uninstall's check. */}}
{{- define "vigil.podLabels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/part-of: vigil
{{- end }}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/* The Vigil server URL: serverURL, else the in-cluster server. */}}
{{- define "vigil.serverURL" -}}
{{- if .Values.serverURL -}}
{{- .Values.serverURL -}}
{{- else if .Values.server.enabled -}}
{{- printf "http://vigil-server.%s.svc:%d" .Release.Namespace (int .Values.server.port) -}}
{{- else -}}
{{- fail "serverURL is required (or server.enabled=true): where sensors and the agent send alerts" -}}
{{- end -}}
{{- end }}

{{/* The Secret holding the join credential (key credential). */}}
{{- define "vigil.joinSecret" -}}
{{- default "vigil-join" .Values.joinCredential.existingSecret -}}
{{- end }}

{{/*
Namespaces the admission webhook never sees: excludedNamespaces plus the
release namespace, sorted and unique. The agent computes the same list
(posture Config.IgnoredNamespaces plus its own namespace) from the
ConfigMap vigil-posture, so the two agree.
*/}}
{{- define "vigil.excludedNamespaces" -}}
{{- $ns := append (.Values.excludedNamespaces | default list) .Release.Namespace | uniq | sortAlpha -}}
{{- toJson $ns -}}
{{- end }}

{{/* The proxy for the sensor's and the agent's connection to the server,
from its Secret; include only when .Values.proxy is set. */}}
{{- define "vigil.proxyEnv" -}}
- name: VIGIL_PROXY
  valueFrom:
    secretKeyRef:
      name: vigil-proxy
      key: proxy
{{- end }}

{{/* Flags, mounts and volumes shared by the sensor, the agent and the
audit tail: the server, the credential file, the server CA. */}}
{{- define "vigil.shipArgs" -}}
- --server={{ include "vigil.serverURL" . }}
- --token-file=/var/run/vigil/join/credential
{{- with .Values.clusterName }}
- --cluster={{ . }}
{{- end }}
{{- if .Values.serverCA }}
- --ca-file=/var/run/vigil/server-ca/ca.crt
{{- end }}
{{- end }}

{{- define "vigil.shipMounts" -}}
- name: join
  mountPath: /var/run/vigil/join
  readOnly: true
{{- if .Values.serverCA }}
- name: server-ca
  mountPath: /var/run/vigil/server-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "vigil.shipVolumes" -}}
- name: join
  secret:
    secretName: {{ include "vigil.joinSecret" . }}
    defaultMode: 0440
{{- if .Values.serverCA }}
- name: server-ca
  configMap:
    name: vigil-server-ca
{{- end }}
{{- end }}

{{/* The restricted container security context Vigil recommends. */}}
{{- define "vigil.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "vigil.restrictedPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
