# Kestrel: `make run` builds and boots the default image, `make test` runs
# every test (boot tests included), `make bench` prints the benchmarks.
# Everything the targets need is installed by scripts/deps.sh.

ARCH    ?= amd64
VERSION ?= 0.1.0-dev
OUT     ?= $(CURDIR)/out
DEF     ?= images/$(ARCH).yaml
# k3s in the rootfs: none, pinned, or standin (test images, with K3S_BINARY=)
K3S     ?= none
GO      ?= go
export GOFLAGS := -buildvcs=false

IMAGE := $(OUT)/kestrel-$(VERSION)-$(ARCH).img

.PHONY: all deps image upgrade-image run test test-short test-all bench k8s-test-bins clean

all: image

deps:
	bash scripts/deps.sh

image: deps
	$(GO) run ./cmd/kestrel-build image -def $(DEF) -out $(OUT) -version $(VERSION) -k3s $(K3S)

# The upgrade image (OCI archive, verified) from the image build; PUSH=REF
# also pushes it to a registry.
upgrade-image: image
	$(GO) run ./cmd/kestrel-build upgrade-image -out $(OUT) -version $(VERSION) $(if $(PUSH),-push $(PUSH))

run: image
	bash scripts/run-qemu.sh $(IMAGE)

k8s-test-bins:
	bash scripts/k8s-test-bins.sh

# The default suite (never from the test cache: -count=1): unit tests, the controller against a real
# kube-apiserver, and the x86_64 boot tests.
test: deps k8s-test-bins
	$(GO) test -count=1 -timeout 80m ./...

# Host-only tests (no qemu boots, no apiserver builds).
test-short:
	$(GO) test -short ./...

# Everything, including the slow tests behind the `slow` build tag.
test-all: deps k8s-test-bins
	$(GO) test -tags slow -timeout 180m ./...

bench: deps k8s-test-bins
	mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./... 2>&1 | tee $(OUT)/bench.txt

clean:
	rm -rf $(OUT)
