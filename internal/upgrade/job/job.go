// Package job builds the upgrade Job for one node of a Plan, in the shape
// rancher's system-upgrade-controller gives it (name, labels, annotations,
// host namespaces, node pinning, tolerations, volumes, environment,
// security context), and reads a Job's outcome.
//
// The one deliberate difference from SUC: no kubectl init container for
// cordon or drain. Kestrel's controller cordons and drains in-process,
// with the library `kubectl drain` is built on (package
// internal/upgrade/drain), while the Job is held at parallelism 0, and only
// then lets it run. Env-var overrides of SUC's
// defaults (SYSTEM_UPGRADE_JOB_*) are taken as Options, not read from the
// process environment here.
package job

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/rancher/wrangler/v3/pkg/name"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SUC's defaults.
const (
	DefaultBackoffLimit            = int32(2)
	DefaultActiveDeadlineSeconds   = int64(600)
	DefaultTTLSecondsAfterFinished = int32(900)
	// LabelExclusive marks pods of exclusive plans; they repel each other.
	LabelExclusive = plan.Group + "/exclusive"
	// AnnotationBootID records the node's boot ID when the Job was made, so
	// the health gate can tell that the node rebooted.
	AnnotationBootID = "kestrel.io/boot-id"
	// SecretsDir is where secrets without an absolute path are mounted.
	SecretsDir = "/run/system-upgrade/secrets"
)

// Options are the controller-wide Job settings (SUC reads them from
// SYSTEM_UPGRADE_JOB_* variables).
type Options struct {
	ControllerName          string
	BackoffLimit            int32
	ActiveDeadlineSeconds   int64
	TTLSecondsAfterFinished int32
	Privileged              bool
	ImagePullPolicy         corev1.PullPolicy
}

// DefaultOptions returns SUC's defaults.
func DefaultOptions() Options {
	return Options{
		ControllerName:          "kestrel-upgrade-controller",
		BackoffLimit:            DefaultBackoffLimit,
		ActiveDeadlineSeconds:   DefaultActiveDeadlineSeconds,
		TTLSecondsAfterFinished: DefaultTTLSecondsAfterFinished,
		Privileged:              true,
		ImagePullPolicy:         corev1.PullIfNotPresent,
	}
}

// Name is the Job's name for a node and hash, exactly as SUC names it.
func Name(planName, nodeName, hash string) string {
	return name.SafeConcatName("apply", planName, "on", nodeName, "with", hash)
}

// New returns the Job applying p's status.latestHash to node. It is created
// paused (parallelism 0); Resume lets it run.
func New(p *plan.Plan, node *corev1.Node, o Options) *batchv1.Job {
	nodeName := node.Name
	st := &p.Status
	lbls := map[string]string{
		plan.LabelController:       o.ControllerName,
		plan.LabelNode:             nodeName,
		plan.LabelPlan:             p.Name,
		plan.LabelVersion:          st.LatestVersion,
		plan.LabelPlanName(p.Name): st.LatestHash,
	}
	if p.Spec.Exclusive {
		lbls[LabelExclusive] = "true"
	}
	podLabels := copyMap(lbls)
	zero, one := int32(0), int32(1)
	backoff, ttl := o.BackoffLimit, o.TTLSecondsAfterFinished
	hostDir := corev1.HostPathDirectory
	j := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(p.Name, nodeName, st.LatestHash),
			Namespace: p.Namespace,
			Labels:    lbls,
			Annotations: map[string]string{
				plan.AnnotationTTLSecondsAfterFinished: strconv.FormatInt(int64(ttl), 10),
				AnnotationBootID:                       node.Status.NodeInfo.BootID,
			},
		},
		Spec: batchv1.JobSpec{
			Parallelism:             &zero,
			Completions:             &one,
			BackoffLimit:            &backoff,
			TTLSecondsAfterFinished: &ttl,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					HostIPC:            true,
					HostPID:            true,
					HostNetwork:        true,
					DNSPolicy:          corev1.DNSClusterFirstWithHostNet,
					ServiceAccountName: p.Spec.ServiceAccountName,
					PriorityClassName:  p.Spec.PriorityClassName,
					ImagePullSecrets:   p.Spec.ImagePullSecrets,
					Affinity:           affinity(p, nodeName),
					Tolerations: append([]corev1.Toleration{{
						Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
					}}, p.Spec.Tolerations...),
					RestartPolicy: corev1.RestartPolicyNever,
					Volumes: []corev1.Volume{{
						Name:         "host-root",
						VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: &hostDir}},
					}, {
						Name: "pod-info",
						VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
							{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
							{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
						}}},
					}},
				},
			},
		},
	}
	if ads := activeDeadline(p, o); ads > 0 {
		j.Spec.ActiveDeadlineSeconds = &ads
	}
	pod := &j.Spec.Template.Spec
	for _, s := range p.Spec.Secrets {
		pod.Volumes = append(pod.Volumes, corev1.Volume{
			Name:         name.SafeConcatName("secret", s.Name),
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: s.Name, DefaultMode: s.DefaultMode}},
		})
	}
	for _, spec := range []*plan.ContainerSpec{p.Spec.Prepare, p.Spec.Upgrade} {
		if spec == nil {
			continue
		}
		for _, v := range spec.Volumes {
			if hasVolume(pod.Volumes, v.Name) {
				continue
			}
			pod.Volumes = append(pod.Volumes, corev1.Volume{
				Name:         v.Name,
				VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: v.Source}},
			})
		}
	}
	if p.Spec.Prepare != nil {
		c := container("prepare", p, *p.Spec.Prepare, o)
		pod.InitContainers = append(pod.InitContainers, c)
	}
	up := container("upgrade", p, *p.Spec.Upgrade, o)
	if up.SecurityContext == nil {
		priv := o.Privileged
		up.SecurityContext = &corev1.SecurityContext{
			Privileged:   &priv,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"CAP_SYS_BOOT"}},
		}
	}
	pod.Containers = []corev1.Container{up}
	return j
}

func activeDeadline(p *plan.Plan, o Options) int64 {
	if d := p.Spec.JobActiveDeadlineSecs; d != nil && *d >= 0 {
		return *d
	}
	return o.ActiveDeadlineSeconds
}

func affinity(p *plan.Plan, nodeName string) *corev1.Affinity {
	a := &corev1.Affinity{
		NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{nodeName},
				}}}},
			},
		},
		PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: plan.LabelPlan, Operator: metav1.LabelSelectorOpIn, Values: []string{p.Name},
				}}},
				TopologyKey: corev1.LabelHostname,
			}},
		},
	}
	if p.Spec.Exclusive {
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: LabelExclusive, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"},
				}}},
				TopologyKey: corev1.LabelHostname,
			})
	}
	return a
}

func container(cname string, p *plan.Plan, spec plan.ContainerSpec, o Options) corev1.Container {
	st := &p.Status
	fieldEnv := func(n, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: n, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	env := []corev1.EnvVar{
		fieldEnv("SYSTEM_UPGRADE_NODE_NAME", "spec.nodeName"),
		fieldEnv("SYSTEM_UPGRADE_POD_NAME", "metadata.name"),
		fieldEnv("SYSTEM_UPGRADE_POD_UID", "metadata.uid"),
	}
	env = append(env, spec.Env...)
	env = append(env,
		corev1.EnvVar{Name: "SYSTEM_UPGRADE_PLAN_NAME", Value: p.Name},
		corev1.EnvVar{Name: "SYSTEM_UPGRADE_PLAN_LATEST_HASH", Value: st.LatestHash},
		corev1.EnvVar{Name: "SYSTEM_UPGRADE_PLAN_LATEST_VERSION", Value: st.LatestVersion},
	)
	c := corev1.Container{
		Name:            cname,
		Image:           WithLatestTag(spec.Image, st.LatestVersion),
		Command:         spec.Command,
		Args:            spec.Args,
		Env:             env,
		EnvFrom:         spec.EnvFrom,
		ImagePullPolicy: o.ImagePullPolicy,
		SecurityContext: spec.SecurityContext,
		VolumeMounts: []corev1.VolumeMount{
			{Name: "host-root", MountPath: "/host"},
			{Name: "pod-info", MountPath: "/run/system-upgrade/pod", ReadOnly: true},
		},
	}
	for _, s := range p.Spec.Secrets {
		path := s.Path
		if path == "" {
			path = filepath.Join(SecretsDir, s.Name)
		} else if !strings.HasPrefix(path, "/") {
			path = filepath.Join(SecretsDir, path)
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name.SafeConcatName("secret", s.Name), MountPath: path, ReadOnly: true})
	}
	for _, v := range spec.Volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: v.Destination})
	}
	return c
}

// WithLatestTag gives image the tag version when it names no tag and no
// digest (SUC's rule); otherwise image is returned unchanged.
func WithLatestTag(image, version string) string {
	if version == "" || strings.Contains(image, "@") {
		return image
	}
	last := image[strings.LastIndex(image, "/")+1:]
	if strings.Contains(last, ":") {
		return image
	}
	return image + ":" + plan.MungeVersion(version)
}

func hasVolume(vs []corev1.Volume, n string) bool {
	for _, v := range vs {
		if v.Name == n {
			return true
		}
	}
	return false
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Outcome is what a Job's status says.
type Outcome int

// Job outcomes.
const (
	Running Outcome = iota
	Complete
	Failed
)

// OutcomeOf reads the Job's terminal conditions.
func OutcomeOf(j *batchv1.Job) (Outcome, string) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return Complete, c.Message
		case batchv1.JobFailed:
			msg := c.Reason
			if c.Message != "" {
				msg += ": " + c.Message
			}
			return Failed, msg
		}
	}
	return Running, ""
}

// Paused reports whether the Job is still held at parallelism 0.
func Paused(j *batchv1.Job) bool {
	return j.Spec.Parallelism != nil && *j.Spec.Parallelism == 0
}
