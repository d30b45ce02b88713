# vmas — two commands on a fresh machine: `make demo` and `make test`. Both install first when needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# a dynamic electronic video of the embedded set, given music at the end of the demo
DEMO_VIDEO ?= data/synth-0000-00004.mp4

# No telemetry, no model hub downloads.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING := false

.PHONY: help install demo test test-fast bench clean

help:
	@echo "make demo   run the pipeline on the embedded synthetic data (installs first)"
	@echo "make test   run the test suite (installs first)"
	@echo "make install | test-fast | bench | clean"

install: $(STAMP)

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) scripts/install.sh $(VENV) --editable
	@touch $(STAMP)
	@echo "installed into $(VENV) ($$(du -sh $(VENV) | cut -f1))"

demo: install
	$(BIN)/vmas synth --workers 2
	$(BIN)/dvc add --quiet data
	$(BIN)/dvc push --quiet
	DAGSTER_HOME=$(CURDIR)/.dagster VMAS_WORKERS=2 VMAS_DEMO_VIDEOS=$(DEMO_VIDEO) $(BIN)/python -m orchestration.materialize
	@echo
	@echo "Embedded data: $$(ls data/*.mp4 | wc -l) videos in data/ (ground truth in data/*.truth.json),"
	@echo "tracked by DVC in data.dvc and pushed to the local remote .dvc-storage/."
	@echo "Every stage ran as a Dagster asset, each checked by its Great Expectations suite (see above)."
	@echo "Curation manifests (Parquet): artifacts/manifests/; clips: artifacts/clip/; tokens: artifacts/tokenize/ (demo codec: shipped in src/vmas/codec/weights/demo/)."
	@echo "Training shards (WebDataset tars, streamed by training; train.data: shards): artifacts/shard/ (index.parquet lists them)."
	@echo "VMAs model: artifacts/train/model.pt (checkpoints, curves, report beside it)."
	@echo "Evaluation on held-out videos: artifacts/evaluate/report.html (metrics.json, generated audio/ beside it)."
	@echo "A video with generated music: artifacts/generate/$$(basename $(DEMO_VIDEO)) (WAV and JSON sidecar beside it)."
	@echo
	@echo "Dagster UI (assets, checks, runs, the new-video sensor, the retraining schedule):"
	@echo "    DAGSTER_HOME=$(CURDIR)/.dagster $(BIN)/dagster dev"
	@echo "MLflow UI (runs, the registry; the champion is models:/vmas@champion):"
	@echo "    $(BIN)/mlflow ui --backend-store-uri sqlite:///artifacts/mlflow.db"
	@echo "DVC: the same stages in dvc.yaml:  source $(BIN)/activate && dvc repro && dvc metrics show"
	@echo "Active profile: params.yaml ($$($(BIN)/vmas config show | head -1))."

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/synth.py --out artifacts/benchmarks/synth.json
	$(BIN)/python benchmarks/curation.py --out artifacts/benchmarks/curation.json
	$(BIN)/python benchmarks/ingest_disco.py --out artifacts/benchmarks/ingest_disco.json
	$(BIN)/python benchmarks/codec_encode.py --out artifacts/benchmarks/codec_encode.json
	$(BIN)/python benchmarks/tokenize_stage.py --out artifacts/benchmarks/tokenize.json
	$(BIN)/python benchmarks/train_step.py --out artifacts/benchmarks/train_step.json
	$(BIN)/python benchmarks/dataloader.py --out artifacts/benchmarks/dataloader.json
	$(BIN)/python benchmarks/generate.py --out artifacts/benchmarks/generate.json

clean:
	rm -rf artifacts .pytest_cache
