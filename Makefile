# Vigil's build. `make run` runs Vigil; `make test` runs every test as root
# on a Debian machine, installing what the tests need first.
GO        ?= go
BIN       ?= bin/vigil
BPF_DIR   := internal/sensor/bpf
VM_KERNELS ?=

.PHONY: all build run deps generate verify-generate vet kube test unit fuzz vmtest bench acceptance clean

all: build

# build makes bin/vigil and bin/vigil-node, the node build (-tags node: the
# sensor alone, what the chart's DaemonSet runs).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/vigil
	CGO_ENABLED=0 $(GO) build -trimpath -tags node -o $(BIN)-node ./cmd/vigil

run: build
	$(BIN) up

# deps installs the Debian packages the tests and `make generate` need (idempotent).
deps:
	hack/install-deps.sh

# generate rebuilds the eBPF objects and their Go bindings with Debian's clang-14.
generate:
	cd $(BPF_DIR) && $(GO) generate ./...

# verify-generate fails when the committed eBPF objects differ from a fresh build.
verify-generate:
	hack/verify-generate.sh

# kube builds kube-apiserver and the other control-plane binaries that
# internal/kubetest runs, from the tools module in hack/kube, into
# /var/cache/vigil-kube (about 6 minutes cold on 2 cores; instant once cached).
kube:
	hack/kube/build.sh

# e2e-node brings up a real single-node cluster (etcd, kube-apiserver,
# controller-manager, scheduler, containerd, kube-proxy, kubelet), runs a pod
# in it and tears it all down (test/e2e, its own module; docs/E2E.md). As
# root, after `make deps kube`; about 20 s once compiled.
.PHONY: e2e-node
e2e-node:
	cd test/e2e && $(GO) test -v -count=1 -run TestNodeRunsPod ./node/ -timeout 20m

# e2e installs Vigil into that node and checks it end to end: builds the
# vigil binary and image, runs vigil server on the host, vigil install,
# vigil verify (every row, both test alerts with pod/namespace/image
# attribution), vigil uninstall, teardown (docs/E2E.md). As root, after
# `make deps kube`. Logs under artifacts/e2e/ when it fails.
.PHONY: e2e
e2e:
	cd test/e2e && $(GO) test -v -count=1 -run TestVigilOnNode . -timeout 25m

vet:
	$(GO) vet ./...
	$(GO) vet -tags node ./cmd/vigil ./internal/cli
	cd test/e2e && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# unit runs every Go test (privileged ones included: run as root) and
# compiles every benchmark once.
unit:
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...

# vmtest runs the sensor's privileged tests under Debian's 6.1 and 6.12 kernels in qemu.
vmtest:
	hack/vmtest.sh $(VM_KERNELS)

# fuzz runs the fuzzers of untrusted input for a bounded time each.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) ./internal/ship/
	$(GO) test -run '^$$' -fuzz '^FuzzConsoleRequests$$' -fuzztime $(FUZZTIME) ./internal/console/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) ./internal/audit/
	$(GO) test -run '^$$' -fuzz '^FuzzReadLines$$' -fuzztime $(FUZZTIME) ./internal/audit/
	$(GO) test -run '^$$' -fuzz '^FuzzAdmissionReview$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 50x ./internal/admission/
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./internal/posture/

test: deps verify-generate vet kube unit fuzz vmtest e2e

# bench measures the sensor's overhead on an exec- and connect-heavy workload,
# the end-to-end alert latency, and the detection engine's throughput.
bench: build
	bench/sensor-overhead.sh 5
	bench/alert-latency.sh 300
	$(GO) test -run '^$$' -bench 'Engine' -benchtime 3s ./internal/detect/

acceptance: build
	../shared/acceptance/02-sensor
	../shared/acceptance/03-rules
	../shared/acceptance/04-server
	../shared/acceptance/05-console
	../shared/acceptance/08-install-simulate
	../shared/acceptance/09-e2e

# images builds the vigil image for linux/amd64 and linux/arm64 without a
# Docker engine (hack/images): a multi-arch OCI layout in build/images/vigil,
# build/images/vigil-<arch>.tar for `ctr -n k8s.io images import`, and the
# victim image from Debian's busybox-static when /bin/busybox exists.
# Reproducible: timestamps are the commit time. `make push REGISTRY=host/repo`
# pushes the index with the default docker keychain.
IMAGE_REPO    ?= vigil.dev/vigil
IMAGE_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUSYBOX       ?= $(wildcard /bin/busybox)
.PHONY: images push
images:
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(GO) run ./hack/images -out build/images \
		-repo $(IMAGE_REPO) -version $(IMAGE_VERSION) -revision "$$(git rev-parse HEAD 2>/dev/null)" \
		$(if $(BUSYBOX),-busybox $(BUSYBOX))

push:
	@test -n "$(REGISTRY)" || { echo "push: set REGISTRY=host/repo, e.g. make push REGISTRY=ghcr.io/acme/vigil" >&2; exit 1; }
	$(MAKE) images
	$(GO) run ./hack/images -out build/images -push $(REGISTRY)

clean:
	rm -rf bin
