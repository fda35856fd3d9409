package controller

import (
	"fmt"
	"testing"
	"time"

	"context"
	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The Job the controller creates on a real apiserver has SUC's shape,
// field by field.
func TestJobSpecMatchesSUC(t *testing.T) {
	c := newCluster(t)
	nodes := c.nodes(1, "v1", nil)
	if _, err := c.kube.CoreV1().Secrets(c.ns).Create(c.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.controller(nil)
	ads := int64(900)
	mode := int32(0o400)
	p := c.createPlan(&plan.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "shape"},
		Spec: plan.PlanSpec{
			Concurrency: 1, NodeSelector: c.selector(), ServiceAccountName: "system-upgrade",
			Version: "v1.2.3+k3s1", JobActiveDeadlineSecs: &ads, Exclusive: true, PriorityClassName: "system-node-critical",
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
			Tolerations:      []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Secrets:          []plan.SecretSpec{{Name: "creds", Path: "creds", DefaultMode: &mode}},
			Prepare:          &plan.ContainerSpec{Image: "rancher/k3s-upgrade", Args: []string{"prepare", "k3s-server"}},
			Upgrade: &plan.ContainerSpec{Image: "rancher/k3s-upgrade", Command: []string{"/upgrade"},
				Env:     []corev1.EnvVar{{Name: "EXTRA", Value: "1"}},
				Volumes: []plan.VolumeSpec{{Name: "cfg", Source: "/etc/kestrel", Destination: "/host-etc"}}},
		},
	})
	var j *batchv1.Job
	err := wait.PollUntilContextTimeout(c.ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		js := c.jobs()
		if len(js) == 1 && !job.Paused(&js[0]) {
			j = &js[0]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no running job: %v", err)
	}
	got := c.waitPlan(p.Name, 5*time.Second, "hash", func(p *plan.Plan) bool { return p.Status.LatestHash != "" })
	hash := got.Status.LatestHash
	pod := j.Spec.Template.Spec
	up := pod.Containers[0]
	env := map[string]string{}
	for _, e := range up.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		} else {
			env[e.Name] = e.Value
		}
	}
	mounts := map[string]string{}
	for _, m := range up.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	str := func(v any) string { return fmt.Sprint(v) }
	rows := []struct{ field, got, want string }{
		{"name", j.Name, job.Name("shape", nodes[0], hash)},
		{"label plan", j.Labels[plan.LabelPlan], "shape"},
		{"label node", j.Labels[plan.LabelNode], nodes[0]},
		{"label version", j.Labels[plan.LabelVersion], "v1.2.3-k3s1"},
		{"label plan hash", j.Labels[plan.LabelPlanName("shape")], hash},
		{"label controller", j.Labels[plan.LabelController], "kestrel-upgrade-controller"},
		{"pod label plan", j.Spec.Template.Labels[plan.LabelPlan], "shape"},
		{"pod label exclusive", j.Spec.Template.Labels[job.LabelExclusive], "true"},
		{"job label exclusive", j.Labels[job.LabelExclusive], "true"},
		{"ttl annotation", j.Annotations[plan.AnnotationTTLSecondsAfterFinished], "900"},
		{"backoffLimit", str(*j.Spec.BackoffLimit), "2"},
		{"ttlSecondsAfterFinished", str(*j.Spec.TTLSecondsAfterFinished), "900"},
		{"activeDeadlineSeconds", str(*j.Spec.ActiveDeadlineSeconds), "900"},
		{"parallelism (resumed)", str(*j.Spec.Parallelism), "1"},
		{"hostPID", str(pod.HostPID), "true"},
		{"hostIPC", str(pod.HostIPC), "true"},
		{"hostNetwork", str(pod.HostNetwork), "true"},
		{"dnsPolicy", string(pod.DNSPolicy), "ClusterFirstWithHostNet"},
		{"restartPolicy", string(pod.RestartPolicy), "Never"},
		{"serviceAccountName", pod.ServiceAccountName, "system-upgrade"},
		{"priorityClassName", pod.PriorityClassName, "system-node-critical"},
		{"imagePullSecrets", str(pod.ImagePullSecrets), "[{pull}]"},
		{"node affinity", str(pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]),
			str(corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{nodes[0]}})},
		{"anti-affinity terms", str(len(pod.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution)), "2"},
		{"toleration unschedulable", str(pod.Tolerations[0]), str(corev1.Toleration{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})},
		{"toleration from plan", pod.Tolerations[1].Key, "node-role.kubernetes.io/control-plane"},
		{"volume host-root", pod.Volumes[0].Name + ":" + pod.Volumes[0].HostPath.Path, "host-root:/"},
		{"volume pod-info", pod.Volumes[1].Name, "pod-info"},
		{"volume secret", pod.Volumes[2].Name + ":" + pod.Volumes[2].Secret.SecretName + ":" + str(*pod.Volumes[2].Secret.DefaultMode), "secret-creds:creds:256"},
		{"volume plan hostPath", pod.Volumes[3].Name + ":" + pod.Volumes[3].HostPath.Path, "cfg:/etc/kestrel"},
		{"init containers", str(len(pod.InitContainers)), "1"},
		{"prepare name", pod.InitContainers[0].Name, "prepare"},
		{"prepare image (latest tag)", pod.InitContainers[0].Image, "rancher/k3s-upgrade:v1.2.3-k3s1"},
		{"upgrade name", up.Name, "upgrade"},
		{"upgrade image (latest tag)", up.Image, "rancher/k3s-upgrade:v1.2.3-k3s1"},
		{"upgrade command", str(up.Command), "[/upgrade]"},
		{"imagePullPolicy", string(up.ImagePullPolicy), "IfNotPresent"},
		{"privileged", str(*up.SecurityContext.Privileged), "true"},
		{"capabilities", str(up.SecurityContext.Capabilities.Add), "[CAP_SYS_BOOT]"},
		{"mount /host", mounts["host-root"], "/host"},
		{"mount pod-info", mounts["pod-info"], "/run/system-upgrade/pod"},
		{"mount secret", mounts["secret-creds"], "/run/system-upgrade/secrets/creds"},
		{"mount volume", mounts["cfg"], "/host-etc"},
		{"env SYSTEM_UPGRADE_NODE_NAME", env["SYSTEM_UPGRADE_NODE_NAME"], "field:spec.nodeName"},
		{"env SYSTEM_UPGRADE_POD_NAME", env["SYSTEM_UPGRADE_POD_NAME"], "field:metadata.name"},
		{"env SYSTEM_UPGRADE_POD_UID", env["SYSTEM_UPGRADE_POD_UID"], "field:metadata.uid"},
		{"env SYSTEM_UPGRADE_PLAN_NAME", env["SYSTEM_UPGRADE_PLAN_NAME"], "shape"},
		{"env SYSTEM_UPGRADE_PLAN_LATEST_HASH", env["SYSTEM_UPGRADE_PLAN_LATEST_HASH"], hash},
		{"env SYSTEM_UPGRADE_PLAN_LATEST_VERSION", env["SYSTEM_UPGRADE_PLAN_LATEST_VERSION"], "v1.2.3-k3s1"},
		{"env from plan", env["EXTRA"], "1"},
	}
	for _, r := range rows {
		if r.got != r.want {
			t.Errorf("%s = %q, want %q", r.field, r.got, r.want)
		}
	}
}
