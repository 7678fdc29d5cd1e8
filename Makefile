# Every binary, the release archive, tests, benchmarks and the local cluster.
# `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
OUT := out
# One version for every output (binaries, the release archive, image tags,
# the kustomize overlays): hack/version.sh, which install-cni-plugin.sh uses too.
VERSION ?= $(shell ./hack/version.sh)
# Image creation time and file timestamps: the last commit's, so that the
# same commit always builds the same image digests.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS := -s -w -X github.com/open-acn/acn/internal/version.Version=$(VERSION)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
ARCHIVE := $(OUT)/azure-vnet-cni-linux-amd64-$(VERSION).tgz
WIN_ARCHIVE := $(OUT)/azure-vnet-cni-windows-amd64-$(VERSION).zip
# The Linux archive and image carry every conflist but the Windows ones.
LINUX_CONFLISTS := $(filter-out %-windows.conflist,$(wildcard deploy/cni/*.conflist))
TEST_TIMEOUT ?= 20m
E2E_DATAPLANES ?= iptables,nftables
# make e2e: kube-proxy modes (one cluster each, with every dataplane) and
# cyclonus probe modes (each step probed in both on the same cluster);
# make e2e-services runs every kube-proxy mode.
E2E_KUBE_PROXY ?= iptables
E2E_PROBE_MODES ?= pod-ip,service-ip
E2E_REAL_DATAPLANES ?= iptables,nftables
E2E_REAL_CNI ?= transparent
E2E_REAL_PROCS ?= 3
# make fuzz: how long each fuzz target runs.
FUZZTIME ?= 60s
# make soak: create/delete cycles per dataplane.
SOAK_CYCLES ?= 30
# Every native fuzz target, as package:FuzzName, found in the test files.
FUZZ_TARGETS ?= $(shell ./hack/fuzz-targets.sh)

IMAGES := azure-npm azure-cni

.PHONY: help version all podserver azure-npm azure-vnet azure-vnet-ipam azure-cni-install azure-cni-plugins azure-cni-plugins-windows images test e2e e2e-services bench bench-scale demo deps lint clean cluster-up cluster-down tools tools-node tools-e2e cluster-real cluster-real-down e2e-real fuzz interrupt-test soak

version: ## print the version every output is named and tagged with
	@echo $(VERSION)

help: ## list targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

all: azure-npm azure-vnet azure-vnet-ipam ## build every binary

azure-npm: ## build out/azure-npm (the NetworkPolicy daemon)
	$(GOBUILD) -o $(OUT)/azure-npm ./cmd/npm

azure-vnet: ## build out/azure-vnet (the CNI network plugin)
	$(GOBUILD) -o $(OUT)/azure-vnet ./cmd/azure-vnet

azure-vnet-ipam: ## build out/azure-vnet-ipam (the CNI IPAM plugin)
	$(GOBUILD) -o $(OUT)/azure-vnet-ipam ./cmd/azure-vnet-ipam

azure-cni-install: ## build out/azure-cni-install (the azure-cni image's installer)
	$(GOBUILD) -o $(OUT)/azure-cni-install ./cmd/azure-cni-install

podserver: ## build out/podserver (what test pods run)
	$(GOBUILD) -o $(OUT)/podserver ./test/podserver

azure-cni-plugins: azure-vnet azure-vnet-ipam ## release archive of both plugins, conflists and install script, with .sha256
	@rm -rf $(OUT)/cni-archive && mkdir -p $(OUT)/cni-archive
	cp $(OUT)/azure-vnet $(OUT)/azure-vnet-ipam $(LINUX_CONFLISTS) deploy/cni/install-cni-plugin.sh $(OUT)/cni-archive/
	tar -C $(OUT)/cni-archive --owner=0 --group=0 -czf $(ARCHIVE) .
	cd $(OUT) && sha256sum $(notdir $(ARCHIVE)) > $(notdir $(ARCHIVE)).sha256
	@echo "$(ARCHIVE)"

azure-cni-plugins-windows: ## Windows release archive (.zip + .sha256): azure-vnet.exe, azure-vnet-ipam.exe, the Windows conflist (also as 10-azure.conflist, what install-cni-plugin.ps1 installs)
	GOOS=windows GOARCH=amd64 $(GOBUILD) -o $(OUT)/windows-amd64/azure-vnet.exe ./cmd/azure-vnet
	GOOS=windows GOARCH=amd64 $(GOBUILD) -o $(OUT)/windows-amd64/azure-vnet-ipam.exe ./cmd/azure-vnet-ipam
	@rm -rf $(OUT)/cni-archive-windows && mkdir -p $(OUT)/cni-archive-windows
	cp $(OUT)/windows-amd64/azure-vnet.exe $(OUT)/windows-amd64/azure-vnet-ipam.exe deploy/cni/10-azure-windows.conflist deploy/cni/install-cni-plugin.ps1 $(OUT)/cni-archive-windows/
	cp deploy/cni/10-azure-windows.conflist $(OUT)/cni-archive-windows/10-azure.conflist
	touch -d @$(SOURCE_DATE_EPOCH) $(OUT)/cni-archive-windows/*
	rm -f $(WIN_ARCHIVE) && cd $(OUT)/cni-archive-windows && zip -X -q -D ../$(notdir $(WIN_ARCHIVE)) $$(ls | LC_ALL=C sort)
	cd $(OUT) && sha256sum $(notdir $(WIN_ARCHIVE)) > $(notdir $(WIN_ARCHIVE)).sha256
	@echo "$(WIN_ARCHIVE)"

images: azure-npm azure-vnet azure-vnet-ipam azure-cni-install ## image tarballs out/images/<name>.tar tagged $(VERSION) (no registry or daemon needed); out/deploy/{npm,cni} select them for kubectl apply -k
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./hack/imagebuild build --version $(VERSION) --out $(OUT)/images $(addprefix images/,$(IMAGES))
	$(GO) run ./hack/imagebuild overlay --version $(VERSION) --out $(OUT)/deploy deploy/npm deploy/cni deploy/cni-file-ipam

tools: ## build etcd, kube-apiserver and kubectl into out/tools (cached)
	./hack/build-tools.sh control

tools-node: ## also kubelet, kube-proxy, kube-controller-manager, kube-scheduler, agnhost (cached)
	./hack/build-tools.sh control node

tools-e2e: ## also the upstream e2e.test and ginkgo, and the network-policy-api conformance suite (cached)
	./hack/build-tools.sh control node e2e npapi

deps: ## install system packages and Go modules (idempotent)
	./hack/deps.sh

test: tools-node all podserver images ## run every test (needs root for the kernel tests; CI is root)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

e2e: tools-node all podserver ## all 230 cyclonus cases (pod-IP and Service-IP probes) on a simulated 2-node cluster with kube-proxy, per dataplane; NodePort/LoadBalancer, node-traffic and restart tables
	$(GO) run ./test/e2e/cmd/e2e --dataplanes $(E2E_DATAPLANES) --kube-proxy $(E2E_KUBE_PROXY) --probe-modes $(E2E_PROBE_MODES) 2>&1 | tee -i $(OUT)/e2e.log; exit $${PIPESTATUS[0]}

e2e-services: ## make e2e on every kube-proxy mode (iptables and nftables) x dataplane x probe mode (long)
	$(MAKE) e2e E2E_KUBE_PROXY=iptables,nftables

fuzz: ## run every fuzz target for FUZZTIME each (default 60s); a crash's input lands in the package's testdata/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "== fuzz $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg; done

interrupt-test: tools all podserver ## interrupt make e2e/demo/bench and a cluster test with SIGINT, SIGTERM and a closed output; nothing may remain (slow)
	ACN_INTERRUPT_TESTS=1 $(GO) test -count=1 -v -timeout 120m ./test/interrupt

soak: tools all podserver ## SOAK_CYCLES cycles of namespaces, pods and policies created and deleted per dataplane; fails if the agent or the kernel grows (not in CI)
	$(GO) run ./test/soak --cycles $(SOAK_CYCLES) --dataplanes $(E2E_DATAPLANES)

bench: tools-node all images ## benchmarks: prints a table, writes out/bench/results.json
	./hack/bench.sh

bench-scale: tools all podserver ## one node's azure-npm in a 5,000-node, 150,000-pod cluster under churn (long; SCALE_FLAGS to resize), writes out/bench/scale.json
	$(GO) run ./test/bench/scale $(SCALE_FLAGS)

demo: $(if $(filter real,$(DEMO_CLUSTER)),tools-node images,tools) all podserver ## the main job: a two-node cluster, policies, connectivity before/after (DEMO_CLUSTER=real: on the real cluster)
	./hack/demo.sh

lint: ## gofmt, go vet (linux and windows)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...

cluster-up: tools ## start etcd + kube-apiserver on 127.0.0.1; kubeconfig in out/cluster/admin.kubeconfig
	$(GO) run ./hack/localcluster up --dir $(OUT)/cluster

cluster-down: ## stop the local cluster and remove its state
	$(GO) run ./hack/localcluster down --dir $(OUT)/cluster

cluster-real: tools-node all podserver images ## a real 2-node cluster (containerd, kubelet, kube-proxy per node), CNI and NPM from the manifests
	$(GO) run ./test/realcluster/cmd/realcluster up --dir $(OUT)/cluster-real

cluster-real-down: ## stop the real cluster; nothing of it is left
	$(GO) run ./test/realcluster/cmd/realcluster down --dir $(OUT)/cluster-real

e2e-real: tools-e2e all podserver images ## upstream [Feature:NetworkPolicy] e2e specs on the real cluster, per dataplane
	$(GO) run ./test/realcluster/cmd/realcluster e2e --dataplanes $(E2E_REAL_DATAPLANES) --cni $(E2E_REAL_CNI) --procs $(E2E_REAL_PROCS) 2>&1 | tee -i $(OUT)/e2e-real.log; exit $${PIPESTATUS[0]}

clean: cluster-down cluster-real-down ## remove build output (keeps the cached control-plane binaries)
	find $(OUT) -mindepth 1 -maxdepth 1 ! -name tools -exec rm -rf {} +
