package boottest

import (
	"path"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/build/controllerimage"
	"github.com/kestrel-os/kestrel/internal/k3s/manifests"
)

// TestUpgradeControllerShipped boots the stand-in image as a server with no
// config: stage 2 put the upgrade controller's manifests (the Deployment
// naming this version's controller image) into k3s's auto-deploy directory
// and that image, as shipped in the rootfs, into k3s's airgap images.
func TestUpgradeControllerShipped(t *testing.T) {
	t.Parallel()
	g, _, _ := bootK3s(t, "")
	list := g.run("ls " + manifests.K3sDir)
	for _, f := range []string{"namespace.yaml", "crd.yaml", "rbac.yaml", "deployment.yaml", "plan-kestrel.yaml"} {
		if !strings.Contains(list, manifests.Prefix+f) {
			t.Errorf("%s lacks %s%s:\n%s", manifests.K3sDir, manifests.Prefix, f, list)
		}
	}
	dep, _ := g.readFile(path.Join(manifests.K3sDir, manifests.Prefix+"deployment.yaml"))
	if !strings.Contains(string(dep), "image: "+controllerimage.Reference(testVersion)+"\n") {
		t.Errorf("the Deployment does not name %s:\n%s", controllerimage.Reference(testVersion), dep)
	}
	shipped := path.Join(manifests.ShippedImageDir, manifests.ImageName)
	imported := path.Join(manifests.ImagesDir, manifests.Prefix+manifests.ImageName)
	if out := g.run("sha256sum " + shipped + " " + imported + " | cut -d' ' -f1 | uniq | wc -l"); out != "1" {
		t.Errorf("%s and %s differ or are missing:\n%s", shipped, imported, g.run("ls -l "+shipped+" "+imported))
	}
	if out := g.run("tar -xOf " + imported + " manifest.json"); !strings.Contains(out, controllerimage.FullReference(testVersion)) {
		t.Errorf("the airgap archive does not tag %s: %s", controllerimage.FullReference(testVersion), out)
	}
	rec, _ := g.readFile(manifests.RecordFile)
	if !strings.Contains(string(rec), imported) || !strings.Contains(string(rec), manifests.Prefix+"crd.yaml") {
		t.Errorf("%s:\n%s", manifests.RecordFile, rec)
	}
}
