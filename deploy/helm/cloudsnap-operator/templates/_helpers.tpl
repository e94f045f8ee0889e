{{/* Chart name, overridable. */}}
{{- define "cloudsnap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-qualified unless the release name already contains the chart name. */}}
{{- define "cloudsnap.fullname" -}}
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

{{- define "cloudsnap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudsnap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cloudsnap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cloudsnap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cloudsnap
{{- end }}

{{- define "cloudsnap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cloudsnap.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cloudsnap.image" -}}
{{- $repository := required "image.repository is required: no registry publishes the cloudsnap-operator image; build it (make image, or docker build), push it to a registry your nodes pull from, and set image.repository to it (chart README, Image)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the class refers to: an existing one, or the one this chart creates. */}}
{{- define "cloudsnap.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "cloudsnap.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{/* Rules on namespaced CloudSnapshots and Events: cluster-wide or per watched namespace. */}}
{{- define "cloudsnap.namespacedRules" -}}
# list+watch: the kopf.on.event watch stream (cloudsnap.runtime.watch).
# patch: KubeWriter.set_finalizers adds/removes the finalizer (cloudsnap.kube), and
# KubeScheduleStore.release_snapshot drops a deleted schedule's ownerReference from its children.
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshots]
  verbs: [list, watch, patch]
# create: ScheduleController makes each slot's children (KubeScheduleStore.create_snapshot);
# get: it reads the child already there on AlreadyExists, and a child before releasing it;
# KubeRestoreStore.read_snapshot reads the CloudSnapshot a restore names (spec.snapshotName);
# delete: schedule retention and deleteChildrenOnDelete delete the schedule's own children only
# (label and ownerReference UID checked, the UID sent as a precondition).
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshots]
  verbs: [get, create, delete]
# KubeWriter.patch_status writes status through the status subresource (cloudsnap.kube).
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshots/status]
  verbs: [patch]
# list+watch: the kopf.on.event watch of schedules (cloudsnap.runtime.watch).
# patch: the schedule's finalizer (KubeScheduleStore.set_finalizers).
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshotschedules]
  verbs: [list, watch, patch]
# KubeScheduleStore.patch_status writes a schedule's status.
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshotschedules/status]
  verbs: [patch]
# list+watch: the kopf.on.event watch of restores (cloudsnap.runtime.watch).
# patch: the restore's finalizer (KubeRestoreStore.set_finalizers).
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshotrestores]
  verbs: [list, watch, patch]
# KubeRestoreStore.patch_status writes a restore's status.
- apiGroups: [evs.cloudsnap.io]
  resources: [cloudsnapshotrestores/status]
  verbs: [patch]
# KubeWriter.post_event (cloudsnap.kube) posts core/v1 Events: Created, Failed, Deleted, ..., and a
# schedule's Run, RetentionDeleted, ...
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# list+watch: VolumeSources (cloudsnap.kube) caches claims: spec.persistentVolumeClaimName is
# resolved from that cache (controllers/snapshot/volumes.py), and a claim's change (its binding) retries the
# resources blocked on it at once.
# list: KubeScheduleStore.list_claims evaluates a schedule's persistentVolumeClaimSelector at each
# run. Claims are never read one by one, so no get, and never written.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch]
# A restore's claim (cloudsnap.kube.restore_store): get, to find a claim of that name (one it did
# not make is never touched); create, the claim bound to the restored disk's PersistentVolume;
# delete, that claim only (its restore-uid label checked, its UID sent as a precondition), for a
# restore with deletionPolicy Delete.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, create, delete]
# list: KubeRestoreStore.pods_in lists the pods of a claim's namespace, only while a rollback is
# blocked on an attached disk that backs that claim's PersistentVolume, so that the DiskInUse
# message names the pods to stop (controllers/restore/users.py). No get, no watch, no write.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}

{{/* affinity from values, plus the podAntiAffinityPreset unless affinity.podAntiAffinity is set. */}}
{{- define "cloudsnap.affinity" -}}
{{- $affinity := deepCopy (default (dict) .Values.affinity) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "cloudsnap.selectorLabels" . | fromYaml)) }}
{{- if not (hasKey $affinity "podAntiAffinity") }}
{{- if eq .Values.podAntiAffinityPreset "soft" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- else if eq .Values.podAntiAffinityPreset "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- end }}
{{- end }}
{{- toYaml $affinity }}
{{- end }}

{{/* topologySpreadConstraints from values; an entry without labelSelector selects this release's pods. */}}
{{- define "cloudsnap.topologySpreadConstraints" -}}
{{- $constraints := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "cloudsnap.selectorLabels" $ | fromYaml)) }}
{{- if not (hasKey $constraint "matchLabelKeys") }}
{{- $_ := set $constraint "matchLabelKeys" (list "pod-template-hash") }}
{{- end }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}
