# Kestrel: `make run` builds and boots the default image, `make test` runs
# every test (boot tests included), `make bench` prints the benchmarks.
# Everything the targets need is installed by scripts/deps.sh.

# ARCH names a target (images/<ARCH>.yaml): amd64, arm64, armv7, rpi2,
# rpi3, rpi4; DEF= another definition (its file name is the target name).
ARCH    ?= amd64
VERSION ?= 0.1.0-dev
OUT     ?= $(CURDIR)/out
DEF     ?= images/$(ARCH).yaml
# k3s in the rootfs: none, pinned, or standin (test images, with K3S_BINARY=),
# or kubelet (test images: K3S_BINARY= the k3s-kubelet stand-in, plus the
# upstream kubelet + containerd of scripts/k8s-node-bins.sh)
K3S     ?= none
# qemu's accelerator for `make run` and the boot tests (test/vm reads it
# too): tcg (software, the default: KVM hangs on the build machines) or kvm.
ACCEL   ?= tcg
export ACCEL
GO      ?= go
export GOFLAGS := -buildvcs=false

TARGET := $(basename $(notdir $(DEF)))
IMAGE := $(OUT)/kestrel-$(VERSION)-$(TARGET).img
# Release signing: a dev key pair is made once under $(OUT)/keys unless
# SIGN_KEY= (private key) and TRUSTED_KEYS= (comma-separated public keys
# baked into the image) are given.
DEV_KEYS     := $(OUT)/keys
SIGN_KEY     ?= $(DEV_KEYS)/release.key
TRUSTED_KEYS ?= $(DEV_KEYS)/release.pub

.PHONY: all deps image iso bundle upgrade-image run test test-boot test-host test-short test-all bench k8s-test-bins k8s-node-bins clean

all: image

deps:
	bash scripts/deps.sh

$(DEV_KEYS)/release.key:
	$(GO) run ./cmd/kestrel-build keygen -out $(DEV_KEYS)

image: deps $(if $(filter $(DEV_KEYS)/release.key,$(SIGN_KEY)),$(DEV_KEYS)/release.key)
	$(GO) run ./cmd/kestrel-build image -def $(DEF) -out $(OUT) -version $(VERSION) -k3s $(K3S) \
		-sign-key $(SIGN_KEY) -trusted-keys $(TRUSTED_KEYS)

# The image plus the hybrid live/installer ISO: out/kestrel-<version>-<arch>.iso.
iso: deps $(if $(filter $(DEV_KEYS)/release.key,$(SIGN_KEY)),$(DEV_KEYS)/release.key)
	$(GO) run ./cmd/kestrel-build iso -def $(DEF) -out $(OUT) -version $(VERSION) -k3s $(K3S) \
		-sign-key $(SIGN_KEY) -trusted-keys $(TRUSTED_KEYS)

# The signed single-file release bundle: out/kestrel-<version>-<arch>.bundle.
bundle: image
	$(GO) run ./cmd/kestrel-build bundle -out $(OUT) -version $(VERSION) -target $(TARGET) -key $(SIGN_KEY)

# The upgrade image (OCI archive, verified) from the image build; PUSH=REF
# also pushes it to a registry.
upgrade-image: image
	$(GO) run ./cmd/kestrel-build upgrade-image -out $(OUT) -version $(VERSION) $(if $(PUSH),-push $(PUSH))

run: image
	bash scripts/run-qemu.sh $(IMAGE) $(TARGET)

k8s-test-bins:
	bash scripts/k8s-test-bins.sh

k8s-node-bins:
	bash scripts/k8s-node-bins.sh --controllers

# The default suite (never from the test cache: -count=1): unit tests, the
# controller against a real kube-apiserver, and the boot tests. The boot
# tests (test/boottest: qemu under TCG, two VMs at a time, ~20 min) start at
# once, beside the kube-apiserver build and the host-only packages (whose
# controller tests need it; the default boot tests do not): on a fresh
# 2-core machine, one after the other took the suite past its 30 minutes.
test: deps
	$(MAKE) -j2 test-boot test-host

test-boot:
	$(GO) test -count=1 -timeout 80m ./test/boottest

test-host: k8s-test-bins
	$(GO) test -count=1 -timeout 40m $$($(GO) list ./... | grep -v '/test/boottest$$')

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
