{{/*
Names are fixed, like those of the kustomize install: the operator is a cluster
singleton, and the manager finds its webhook Service, webhook configuration and
certificate Secrets by these names (see its --webhook-* flags).
*/}}

{{/* labels of every object. */}}
{{- define "apitoken.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: apitoken-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* selectorLabels of a component's pods ("manager", "validator" or "exchange"); they never change. */}}
{{- define "apitoken.selectorLabels" -}}
app.kubernetes.io/name: apitoken-operator
app.kubernetes.io/component: {{ . }}
{{- end }}

{{/* componentLabels: labels plus the component, for a component's objects. */}}
{{- define "apitoken.componentLabels" -}}
{{ include "apitoken.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image of every binary. */}}
{{- define "apitoken.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* selfManagedCerts: "true" when the manager issues the serving certificates itself. */}}
{{- define "apitoken.selfManagedCerts" -}}
{{- if not .Values.certManager.enabled }}true{{ end }}
{{- end }}

{{/*
validatorTLSSecret: the Secret holding the validator's certificate, following the
order documented in values.yaml; empty when it serves plain HTTP.
*/}}
{{- define "apitoken.validatorTLSSecret" -}}
{{- if .Values.validator.tls.insecureHTTP }}
{{- else if .Values.validator.tls.secretName }}{{ .Values.validator.tls.secretName }}
{{- else if .Values.certManager.enabled }}apitoken-validator-tls
{{- else }}apitoken-validator-cert
{{- end }}
{{- end }}

{{/* validatorSelfCert: "true" when the manager issues the validator's certificate. */}}
{{- define "apitoken.validatorSelfCert" -}}
{{- if and .Values.validator.enabled (eq (include "apitoken.validatorTLSSecret" .) "apitoken-validator-cert") }}true{{ end }}
{{- end }}

{{/*
exchangeTLSSecret: the Secret holding the exchange's certificate, in the same order as
the validator's (see values.yaml); empty when it serves plain HTTP.
*/}}
{{- define "apitoken.exchangeTLSSecret" -}}
{{- if .Values.exchange.tls.insecureHTTP }}
{{- else if .Values.exchange.tls.secretName }}{{ .Values.exchange.tls.secretName }}
{{- else if .Values.certManager.enabled }}apitoken-exchange-tls
{{- else }}apitoken-exchange-cert
{{- end }}
{{- end }}

{{/* exchangeSelfCert: "true" when the manager issues the exchange's certificate. */}}
{{- define "apitoken.exchangeSelfCert" -}}
{{- if and .Values.exchange.enabled (eq (include "apitoken.exchangeTLSSecret" .) "apitoken-exchange-cert") }}true{{ end }}
{{- end }}

{{/*
keySecretName: the Secret holding the private keys of the issuer named ., as
internal/keystore.SecretName names it: apitoken-issuer-<name>-keys, or for a name too
long for that, its first 215 characters, "-", 16 hex digits of its SHA-256 and "-keys".
A test in internal/install checks the two agree.
*/}}
{{- define "apitoken.keySecretName" -}}
{{- $prefix := "apitoken-issuer-" }}{{ $suffix := "-keys" }}
{{- if le (add (len $prefix) (len .) (len $suffix)) 253 }}
{{- printf "%s%s%s" $prefix . $suffix }}
{{- else }}
{{- printf "%s%s-%s%s" $prefix (trunc (int (sub 253 (add (len $prefix) (len $suffix) 17))) .) (trunc 16 (sha256sum .)) $suffix }}
{{- end }}
{{- end }}

{{/*
validatorPublicURL: where clients reach the validator, for the jwks_uri of its
discovery document: validator.publicURL, or the in-cluster Service's URL.
*/}}
{{- define "apitoken.validatorPublicURL" -}}
{{- if .Values.validator.publicURL }}{{ .Values.validator.publicURL }}
{{- else }}
{{- $scheme := ternary "http" "https" .Values.validator.tls.insecureHTTP }}
{{- $port := int .Values.validator.service.port }}
{{- $defaultPort := ternary 80 443 .Values.validator.tls.insecureHTTP }}
{{- printf "%s://apitoken-validator.%s.svc" $scheme .Release.Namespace }}{{ if ne $port $defaultPort }}:{{ $port }}{{ end }}
{{- end }}
{{- end }}

{{/* issuerURL of the default issuer. */}}
{{- define "apitoken.issuerURL" -}}
{{ .Values.defaultIssuer.issuer | default (printf "https://apitoken-validator.%s.svc" .Release.Namespace) }}
{{- end }}

{{/*
configRules: the rules of a Role or ClusterRole of config/rbac, copied to files/rbac by
`make manifests`, so that the chart grants exactly what the install in config/ grants:
the rules controller-gen generated from the code's +kubebuilder:rbac markers, and the
leader-election Role. A file may hold a ClusterRole and a Role (controller-gen writes
both for markers with and without a namespace): .kind picks one.
*/}}
{{- define "apitoken.configRules" -}}
{{- $role := dict }}
{{- range $doc := splitList "\n---\n" (printf "\n%s" (.Files.Get (printf "files/rbac/%s.yaml" .name))) }}
{{- $obj := fromYaml $doc }}
{{- if and $obj.rules (or (not $.kind) (eq $obj.kind $.kind)) }}{{ $role = $obj }}{{ end }}
{{- end }}
{{- if not $role.rules }}{{ fail (printf "files/rbac/%s.yaml holds no %s rules: run make manifests" .name (.kind | default "")) }}{{ end }}
{{- toYaml $role.rules }}
{{- end }}

{{/* podSpecCommon: the parts of both pod specs that make them Pod Security restricted. */}}
{{- define "apitoken.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
