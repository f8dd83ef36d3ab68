# apitoken-operator

# Tools are built from source at pinned versions into bin/.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION    ?= v2.15.0
# v5.8.3 needs Go 1.27; v5.8.2 is the newest that builds with our toolchain.
KUSTOMIZE_VERSION        ?= v5.8.2
HELM_VERSION             ?= v3.22.0
# The control plane that tests and `make dev` run, built from source by hack/envtest-build.sh.
KUBE_VERSION             ?= 1.37.1
ETCD_VERSION             ?= 3.6.16

LOCALBIN       := $(CURDIR)/bin
CONTROLLER_GEN := $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT  := $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUSTOMIZE      := $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM           := $(LOCALBIN)/helm-$(HELM_VERSION)

CHART := charts/apitoken-operator

export GOTOOLCHAIN := local
export KUBE_VERSION ETCD_VERSION

# A user who already has envtest binaries sets KUBEBUILDER_ASSETS and nothing is built.
ENVTEST_ASSETS = $(if $(KUBEBUILDER_ASSETS),$(KUBEBUILDER_ASSETS),$(shell hack/envtest-build.sh))

TEST_FLAGS ?= -race -timeout 30m
TEST_PKGS  ?= ./...

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=apitoken-manager paths="./internal/controller/...;./internal/admission/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=apitoken-validator paths=./internal/validator/... output:rbac:artifacts:config=config/rbac/validator
	$(CONTROLLER_GEN) rbac:roleName=apitoken-exchange paths=./internal/exchange/... output:rbac:artifacts:config=config/rbac/exchange
	$(CONTROLLER_GEN) webhook paths=./internal/admission/... output:webhook:artifacts:config=config/webhook
	$(CONTROLLER_GEN) rbac:roleName=apitoken-webhook-cert paths=./cmd/manager/... output:rbac:artifacts:config=config/rbac/webhook-cert
	@$(MAKE) --no-print-directory chart-sync

.PHONY: chart-sync
chart-sync: ## Copy the generated CRDs, RBAC rules, webhooks, alerts and dashboard into the Helm chart (part of manifests).
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/rbac/manager.yaml
	cp config/rbac/validator/role.yaml $(CHART)/files/rbac/validator.yaml
	cp config/rbac/exchange/role.yaml $(CHART)/files/rbac/exchange.yaml
	cp config/rbac/webhook-cert/role.yaml $(CHART)/files/rbac/webhook-cert.yaml
	cp config/rbac/leader_election_role.yaml $(CHART)/files/rbac/leader-election.yaml
	cp config/rbac/validator_status_policy.yaml $(CHART)/files/rbac/validator-status-policy.yaml
	cp config/webhook/manifests.yaml $(CHART)/files/webhook/manifests.yaml
	mkdir -p $(CHART)/files/prometheus $(CHART)/files/grafana
	cp config/prometheus/alerts.yaml $(CHART)/files/prometheus/alerts.yaml
	cp config/grafana/apitoken-operator.json $(CHART)/files/grafana/apitoken-operator.json

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify
verify: generate manifests ## Regenerate code and manifests; fail if the tree changed.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above are not formatted"; exit 1; }
	go mod tidy -diff
	@git diff --exit-code -- api config $(CHART) || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config $(CHART))" || { git status --porcelain -- api config $(CHART); echo "generated files are not committed"; exit 1; }

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Build (or reuse) the kube-apiserver, etcd and kubectl binaries; print their directory.
	@echo $(ENVTEST_ASSETS)

.PHONY: test
test: $(HELM) $(KUSTOMIZE) ## Run all tests against a real kube-apiserver and etcd (first run builds them: ~10 min).
	HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $(TEST_FLAGS) $(TEST_PKGS)

.PHONY: e2e
e2e: ## Run the end-to-end tests alone (real manager and validator processes; CI size, ~6 min; see docs/reliability.md).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $(TEST_FLAGS) -count=1 -v -timeout 20m ./test/e2e/

# The issue's full-size figures; any of them can be overridden from the environment.
.PHONY: e2e-soak
e2e-soak: ## Run the end-to-end tests at full size: 300 tokens, 5 min of chaos, 100k bad requests (~25 min).
	E2E_CHAOS_TOKENS=$${E2E_CHAOS_TOKENS:-300} E2E_CHAOS_DURATION=$${E2E_CHAOS_DURATION:-5m} \
	E2E_PROBE_RATE=$${E2E_PROBE_RATE:-60} E2E_FAILOVER_TOKENS=$${E2E_FAILOVER_TOKENS:-50} \
	E2E_FAILOVER_ROUNDS=$${E2E_FAILOVER_ROUNDS:-6} E2E_API_DOWNTIME=$${E2E_API_DOWNTIME:-15s} \
	E2E_BAD_REQUESTS=$${E2E_BAD_REQUESTS:-100000} E2E_BAD_DURATION=$${E2E_BAD_DURATION:-5m} \
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $(TEST_FLAGS) -count=1 -v -timeout 60m ./test/e2e/

.PHONY: fuzz
# Budgets are execution counts, not durations: with a duration, Go 1.26's fuzz coordinator
# can fail a target with a bare "context deadline exceeded" when the time runs out under
# load (golang/go#75804, fixed in Go 1.27). A count has no deadline to race. The counts
# take 10-20s each here; FUZZTIME=5m (or 10000000x) overrides all three for a longer hunt.
FUZZ_VERIFY ?= 30000x
FUZZ_OPAQUE ?= 400000x
FUZZ_JSON ?= 300000x
fuzz: ## Fuzz the token parsers briefly (execution budgets; FUZZTIME overrides).
	go test ./internal/token -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $${FUZZTIME:-$(FUZZ_VERIFY)}
	go test ./internal/token -run '^$$' -fuzz '^FuzzParseOpaque$$' -fuzztime $${FUZZTIME:-$(FUZZ_OPAQUE)}
	go test ./internal/token -run '^$$' -fuzz '^FuzzJSON$$' -fuzztime $${FUZZTIME:-$(FUZZ_JSON)}

.PHONY: bench
bench: ## Run the benchmarks.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test -run '^$$' -bench . -benchmem ./...

# Flags of hack/dev, e.g. DEV_FLAGS=--validator-port=8481.
DEV_FLAGS ?=

# The scale benchmark: a local control plane, the manager and the validator as
# processes at their shipped defaults, N APITokens minted, rotated and restarted over;
# figures in docs/performance.md. SCALE_N sets N, SCALE_FLAGS adds flags of hack/scale
# (e.g. SCALE_FLAGS="-storm=1000 -out=scale.jsonl"). About 2 minutes at N=1000.
SCALE_N ?= 1000
.PHONY: scale-bench
scale-bench: ## Run the scale benchmark (SCALE_N APITokens, default 1000; see docs/performance.md).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/scale -n $(SCALE_N) $(SCALE_FLAGS)

.PHONY: dev
dev: build ## Start the whole system on a local control plane (no cluster needed); Ctrl-C stops it.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/dev $(DEV_FLAGS)

.PHONY: dev-smoke
dev-smoke: build ## Run `make dev`, run every command it prints, and stop: the README's first command, as CI runs it.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/dev --exit-after-ready $(DEV_FLAGS)

##@ Install

.PHONY: chart-lint
chart-lint: $(HELM) ## Lint the Helm chart and render it with default values, with every option on, and without the exchange.
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set certManager.enabled=true --set metrics.serviceMonitor.enabled=true \
		--set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true
	$(HELM) template apitoken $(CHART) --namespace apitoken-system --include-crds >/dev/null
	$(HELM) template apitoken $(CHART) --namespace apitoken-system --include-crds \
		--set certManager.enabled=true --set metrics.serviceMonitor.enabled=true \
		--set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true \
		--set validator.autoscaling.enabled=true --set validator.networkPolicy.enabled=true >/dev/null
	$(HELM) lint --strict $(CHART) --set exchange.enabled=false
	$(HELM) template apitoken $(CHART) --namespace apitoken-system --include-crds \
		--set exchange.enabled=false >/dev/null

.PHONY: kustomize-build
kustomize-build: $(KUSTOMIZE) ## Build the kustomize installs (config/default, config/with-certmanager).
	$(KUSTOMIZE) build config/default >/dev/null
	$(KUSTOMIZE) build config/with-certmanager >/dev/null

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/ ./cmd/...

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $@

$(GOLANGCI_LINT):
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $@

$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/kustomize $@

$(HELM):
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $@
