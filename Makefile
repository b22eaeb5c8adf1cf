# Kubernetes packaging tasks. Images cannot be built on the development machine (no Docker
# daemon there); run `make images` where Docker with BuildKit is available.
#
#   make images REGISTRY=123456789012.dkr.ecr.us-east-1.amazonaws.com          # build both images
#   make images REGISTRY=ghcr.io/acme PUSH=1                                    # ... and push them
#
# Tags: $(REGISTRY)/streamguard:$(VERSION)-cpu and -cuda, the tags the chart's values use.

PYTHON    ?= .venv/bin/python
REGISTRY  ?= localhost:5000
IMAGE     ?= $(REGISTRY)/streamguard
VERSION   ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
RAY_VERSION ?= $(shell sed -n 's/^rayVersion: *//p' helm/streamguard/values.yaml)
# Ray publishes several CUDA variants per release; torch's wheels bring their own CUDA runtime.
CUDA_VARIANT ?= py311-cu121
PUSH      ?= 0
DOCKER    ?= docker

.PHONY: images image-cpu image-cuda lint-images sync-monitoring sync-chart-values k8s test-k8s

images: image-cpu image-cuda

image-cpu:
	$(DOCKER) build -f images/Dockerfile --build-arg RAY_VERSION=$(RAY_VERSION) \
	  --build-arg RAY_IMAGE_VARIANT=py311-cpu --build-arg VARIANT=cpu -t $(IMAGE):$(VERSION)-cpu .
	@if [ "$(PUSH)" = 1 ]; then $(DOCKER) push $(IMAGE):$(VERSION)-cpu; fi

image-cuda:
	$(DOCKER) build -f images/Dockerfile --build-arg RAY_VERSION=$(RAY_VERSION) \
	  --build-arg RAY_IMAGE_VARIANT=$(CUDA_VARIANT) --build-arg VARIANT=cuda -t $(IMAGE):$(VERSION)-cuda .
	@if [ "$(PUSH)" = 1 ]; then $(DOCKER) push $(IMAGE):$(VERSION)-cuda; fi

lint-images:
	.venv/bin/hadolint images/Dockerfile

# The chart can only read files inside itself: keep copies of the canonical monitoring files.
sync-monitoring:
	cp monitoring/grafana/streamguard-dashboard.json helm/streamguard/files/streamguard-dashboard.json
	cp monitoring/prometheus/alerts.yaml helm/streamguard/files/streamguard-alerts.yaml

# `streamguard submit` reads the chart's values and schema from a copy inside the package.
sync-chart-values:
	$(PYTHON) scripts/sync_chart_values.py

# Plain manifests (kustomize base + overlays) rendered from the chart.
k8s:
	$(PYTHON) scripts/render_k8s.py

test-k8s:
	$(PYTHON) -m pytest tests/k8s tests/unit/deploy -q
