package plan

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Golden values computed independently (Python hashlib) from SUC's
// definition: sha224(latestVersion + serviceAccountName + digest paths +
// kubectl secret hashes).
func TestLatestHash(t *testing.T) {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("v")}}
	base := func() *Plan {
		return &Plan{Spec: PlanSpec{ServiceAccountName: "system-upgrade", Upgrade: &ContainerSpec{Image: "rancher/k3s-upgrade"}}}
	}
	tests := []struct {
		name    string
		mod     func(*Plan)
		version string
		want    string
	}{
		{"version and service account", nil, "v1.2.3-k3s1", "da6fb1f33c5ea2dc2c0155840112294024e4f72323179a6ab19c67b4"},
		{"secret", func(p *Plan) { p.Spec.Secrets = []SecretSpec{{Name: "creds", Path: "/x"}} }, "v1.2.3-k3s1",
			"644863e4b63edc2d442512a43a4be662e4a166f5a482883c20288be9"},
		{"ignored secret", func(p *Plan) { p.Spec.Secrets = []SecretSpec{{Name: "creds", IgnoreUpdates: true}} }, "v1.2.3-k3s1",
			"da6fb1f33c5ea2dc2c0155840112294024e4f72323179a6ab19c67b4"},
		{"digest annotation", func(p *Plan) { p.Annotations = map[string]string{AnnotationIncludeInDigest: "spec.upgrade.image"} }, "v1",
			"4dcf4a81333248b7eac542f7eac7db408a6cfbdd1b0b487591b6885c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			if tc.mod != nil {
				tc.mod(p)
			}
			got, err := LatestHash(p, tc.version, map[string]*corev1.Secret{"creds": secret})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("hash = %s, want %s", got, tc.want)
			}
		})
	}
	if sh, _ := SecretHash(secret); sh != "4h6894kd79" {
		t.Errorf("SecretHash = %s, want 4h6894kd79", sh)
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Plan {
		return &Plan{Spec: PlanSpec{Concurrency: 1, Version: "v1", Upgrade: &ContainerSpec{Image: "img"}}}
	}
	tests := []struct {
		name string
		mod  func(*Plan)
		want string
	}{
		{"ok", func(*Plan) {}, ""},
		{"cordon and drain agree", func(p *Plan) { p.Spec.Cordon = ptrB(true); p.Spec.Drain = &DrainSpec{} }, ""},
		{"no upgrade", func(p *Plan) { p.Spec.Upgrade = nil }, "spec.upgrade.image"},
		{"blank image", func(p *Plan) { p.Spec.Upgrade.Image = " " }, "spec.upgrade.image"},
		{"prepare without image", func(p *Plan) { p.Spec.Prepare = &ContainerSpec{} }, "spec.prepare.image"},
		{"no version or channel", func(p *Plan) { p.Spec.Version = "" }, "spec.version or spec.channel"},
		{"negative concurrency", func(p *Plan) { p.Spec.Concurrency = -1 }, "concurrency"},
		{"selector operator", func(p *Plan) {
			p.Spec.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bad"}}}
		}, "spec.nodeSelector"},
		{"selector key", func(p *Plan) { p.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"a b": "c"}} }, "spec.nodeSelector"},
		{"drain with cordon false", func(p *Plan) { p.Spec.Cordon = ptrB(false); p.Spec.Drain = &DrainSpec{} }, "a drain always cordons"},
		{"drain delete conflict", func(p *Plan) {
			p.Spec.Drain = &DrainSpec{DeleteLocalData: ptrB(true), DeleteEmptydirData: ptrB(false)}
		}, "deleteEmptydirData and deleteLocalData"},
		{"drain timeout", func(p *Plan) { x := intstr.FromString("soon"); p.Spec.Drain = &DrainSpec{Timeout: &x} }, "spec.drain.timeout"},
		{"window day", func(p *Plan) { p.Spec.Window = &TimeWindowSpec{Days: []Day{"funday"}} }, "spec.window"},
		{"window zone", func(p *Plan) { p.Spec.Window = &TimeWindowSpec{TimeZone: "Mars/Olympus"} }, "spec.window"},
		{"negative delay", func(p *Plan) { p.Spec.PostCompleteDelay = &metav1.Duration{Duration: -time.Second} }, "postCompleteDelay"},
		{"label key", func(p *Plan) { p.Spec.PostCompleteLabels = map[string]string{"bad key": "x"} }, "postCompleteLabels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok()
			tc.mod(p)
			err := Validate(p)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	// 2026-11-23 is a Monday.
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name string
		w    TimeWindowSpec
		t    string
		want bool
	}{
		{"inside", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "01:00", EndTime: "04:00"}, "2026-11-23T02:00:00Z", true},
		{"before", TimeWindowSpec{Days: []Day{"mon"}, StartTime: "01:00", EndTime: "04:00"}, "2026-11-23T00:59:59Z", false},
		{"after", TimeWindowSpec{Days: []Day{"1"}, StartTime: "01:00", EndTime: "04:00"}, "2026-11-23T04:00:01Z", false},
		{"wrong day", TimeWindowSpec{Days: []Day{"tu"}, StartTime: "01:00", EndTime: "04:00"}, "2026-11-23T02:00:00Z", false},
		{"time zone", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "01:00", EndTime: "04:00", TimeZone: "Europe/Berlin"}, "2026-11-23T02:30:00Z", true},
		{"time zone outside", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "01:00", EndTime: "04:00", TimeZone: "Europe/Berlin"}, "2026-11-23T03:30:00Z", false},
		// kured's semantics: both parts of a window that wraps midnight are
		// judged by the weekday of the moment tested.
		{"wraps midnight, evening", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "22:00", EndTime: "02:00"}, "2026-11-23T23:00:00Z", true},
		{"wraps midnight, next morning", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "22:00", EndTime: "02:00"}, "2026-11-24T01:00:00Z", false},
		{"wraps midnight, morning of start day", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "22:00", EndTime: "02:00"}, "2026-11-23T01:00:00Z", true},
		{"kured 03:04pm", TimeWindowSpec{Days: []Day{"monday"}, StartTime: "01:00pm", EndTime: "03:00pm"}, "2026-11-23T14:00:00Z", true},
		{"kured 3pm", TimeWindowSpec{Days: []Day{"mon"}, StartTime: "9am", EndTime: "5pm"}, "2026-11-23T16:59:00Z", true},
		{"kured 3pm, after", TimeWindowSpec{Days: []Day{"mon"}, StartTime: "9am", EndTime: "5pm"}, "2026-11-23T17:01:00Z", false},
		{"kured 15", TimeWindowSpec{Days: []Day{"MON"}, StartTime: "9", EndTime: "17"}, "2026-11-23T08:59:00Z", false},
		{"kured 15:04:05", TimeWindowSpec{Days: []Day{"1"}, StartTime: "09:00:30", EndTime: "17:00:00"}, "2026-11-23T09:00:30Z", true},
		{"kured 03pm", TimeWindowSpec{Days: []Day{"1"}, StartTime: "09am", EndTime: "05pm"}, "2026-11-23T12:00:00Z", true},
		{"all days", TimeWindowSpec{Days: []Day{"0", "1", "2", "3", "4", "5", "6"}, StartTime: "00:00", EndTime: "23:59"}, "2026-11-25T12:00:00Z", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ParseWindow(&tc.w)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Contains(at(tc.t)); got != tc.want {
				t.Errorf("Contains(%s) = %t, want %t", tc.t, got, tc.want)
			}
		})
	}
	w, _ := ParseWindow(&TimeWindowSpec{Days: []Day{"tuesday"}, StartTime: "03:00", EndTime: "04:00"})
	if got := w.NextOpen(at("2026-11-23T12:00:00Z")); !got.Equal(at("2026-11-24T03:00:00Z")) {
		t.Errorf("NextOpen = %s", got)
	}
}

// TestWindowForms checks the forms kured v1.13.1 accepts and refuses,
// since SUC users write windows in kured's format.
func TestWindowForms(t *testing.T) {
	ok := []string{"15:04", "9:00", "19:00:30", "09:30am", "12pm", "17", "5", "09pm", "9pm", "5pm", "12am"}
	bad := []string{"", "9:30am", "5PM", "5 pm", "25:00", "17h", "noon", "9:5"}
	for _, s := range ok {
		if _, err := ParseWindow(&TimeWindowSpec{Days: []Day{"sat"}, StartTime: s, EndTime: "23:00"}); err != nil {
			t.Errorf("startTime %q: %v", s, err)
		}
	}
	for _, s := range bad {
		if _, err := ParseWindow(&TimeWindowSpec{Days: []Day{"sat"}, StartTime: s, EndTime: "23:00"}); err == nil {
			t.Errorf("startTime %q accepted", s)
		}
	}
	for _, d := range []Day{"any", "7", "satur", "-1"} {
		if _, err := ParseWindow(&TimeWindowSpec{Days: []Day{d}, StartTime: "1", EndTime: "2"}); err == nil {
			t.Errorf("day %q accepted", d)
		}
	}
	if _, err := ParseWindow(&TimeWindowSpec{StartTime: "1", EndTime: "2"}); err == nil || !strings.Contains(err.Error(), "days") {
		t.Errorf("no days: %v", err)
	}
}

func TestCRDObject(t *testing.T) {
	c := CRDObject()
	if c.Name != "plans.upgrade.cattle.io" || c.Spec.Scope != "Namespaced" || len(c.Spec.Versions) != 1 {
		t.Fatalf("CRD identity: %s %s", c.Name, c.Spec.Scope)
	}
	v := c.Spec.Versions[0]
	if v.Name != "v1" || !v.Served || !v.Storage || v.Subresources == nil || v.Subresources.Status == nil {
		t.Errorf("version: %+v", v)
	}
	var cols []string
	for _, col := range v.AdditionalPrinterColumns {
		cols = append(cols, col.Name)
	}
	if strings.Join(cols, ",") != "Image,Channel,Version,Complete,Message,Applying" {
		t.Errorf("columns = %v", cols)
	}
	spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
	if strings.Join(spec.Required, ",") != "upgrade" {
		t.Errorf("spec.required = %v", spec.Required)
	}
	for _, f := range []string{"concurrency", "jobActiveDeadlineSecs", "nodeSelector", "serviceAccountName", "channel", "version",
		"secrets", "tolerations", "exclusive", "window", "prepare", "upgrade", "cordon", "drain", "imagePullSecrets",
		"postCompleteDelay", "priorityClassName", "postCompleteLabels"} {
		if _, ok := spec.Properties[f]; !ok {
			t.Errorf("spec.%s missing from schema", f)
		}
	}
}
