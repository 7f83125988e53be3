{{/* Names and labels. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tollgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tollgate.labels" -}}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the pod mounts what (the gateway file names these paths). */}}
{{- define "tollgate.configDir" -}}/etc/tollgate/config{{- end -}}
{{- define "tollgate.policiesDir" -}}/etc/tollgate/policies{{- end -}}
{{- define "tollgate.tlsDir" -}}/etc/tollgate/tls{{- end -}}
{{- define "tollgate.spiffeDir" -}}/spiffe-workload-api{{- end -}}

{{/* terminationGracePeriodSeconds: the preStop sleep, shutdownDelay, shutdownTimeout, the
gateway's own 1s bound after them, and 4s to spare. */}}
{{- define "tollgate.gracePeriod" -}}
{{- add (int .Values.shutdown.preStopSleepSeconds) (int .Values.shutdown.delaySeconds) (int .Values.shutdown.timeoutSeconds) 5 -}}
{{- end -}}

{{/*
The gateway file: .Values.gateway with what the chart owns set from the other values. The
listeners listen on all of the pod's addresses (":port"), never loopback: a Service or a probe
reaches the pod's IP.
*/}}
{{- define "tollgate.gatewayFile" -}}
{{- $g := deepCopy (.Values.gateway | default dict) -}}
{{- $_ := set $g "shutdownDelay" (printf "%ds" (int .Values.shutdown.delaySeconds)) -}}
{{- $_ := set $g "shutdownTimeout" (printf "%ds" (int .Values.shutdown.timeoutSeconds)) -}}
{{- $id := get $g "identity" | default dict -}}
{{- $wl := get $id "workloadAPI" | default dict -}}
{{- $_ := set $wl "socket" (printf "unix://%s/%s" (include "tollgate.spiffeDir" .) .Values.spiffe.socketName) -}}
{{- $_ := set $id "workloadAPI" $wl -}}
{{- $_ := set $g "identity" $id -}}
{{- if hasKey $g "ingress" -}}
{{- $in := get $g "ingress" | default dict -}}
{{- $_ := set $in "listen" (printf ":%d" (int .Values.ports.https)) -}}
{{- $cert := dict "cert" (printf "%s/tls.crt" (include "tollgate.tlsDir" .)) "key" (printf "%s/tls.key" (include "tollgate.tlsDir" .)) -}}
{{- $_ := set $in "tls" (dict "certificates" (list $cert)) -}}
{{- if hasKey $in "mesh" -}}
{{- $mesh := get $in "mesh" | default dict -}}
{{- $_ := set $mesh "listen" (printf ":%d" (int .Values.ports.mesh)) -}}
{{- $_ := set $in "mesh" $mesh -}}
{{- end -}}
{{- $_ := set $g "ingress" $in -}}
{{- end -}}
{{- if hasKey $g "egress" -}}
{{- $eg := get $g "egress" | default dict -}}
{{- $_ := set $eg "listen" (printf ":%d" (int .Values.ports.egress)) -}}
{{- $_ := set $g "egress" $eg -}}
{{- end -}}
{{- $_ := set $g "admin" (dict "listen" (printf ":%d" (int .Values.ports.admin))) -}}
{{- $pol := get $g "policy" | default dict -}}
{{- $_ := set $pol "files" (list (printf "%s/" (include "tollgate.policiesDir" .))) -}}
{{- $_ := set $g "policy" $pol -}}
apiVersion: tollgate.dev/v1
kind: Gateway
{{ toYaml $g }}
{{- end -}}

{{/* Whether the gateway file has a mesh listener / an egress listener. */}}
{{- define "tollgate.mesh" -}}
{{- if and (hasKey .Values.gateway "ingress") (hasKey (.Values.gateway.ingress | default dict) "mesh") -}}true{{- end -}}
{{- end -}}
{{- define "tollgate.egress" -}}
{{- if hasKey .Values.gateway "egress" -}}true{{- end -}}
{{- end -}}
