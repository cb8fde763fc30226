# Vigil's build. `make run` runs Vigil; `make test` runs every test as root
# on a Debian machine, installing what the tests need first.
GO        ?= go
BIN       ?= bin/vigil
BPF_DIR   := internal/sensor/bpf
VM_KERNELS ?=

.PHONY: all build run deps generate verify-generate vet kube test unit fuzz vmtest bench acceptance clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/vigil

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

vet:
	$(GO) vet ./...
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

test: deps verify-generate vet kube unit fuzz vmtest

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

clean:
	rm -rf bin
