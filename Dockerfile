# The vmas image: the pipeline, training (single- and multi-node) and the Dagster code location.
#   docker build -t REGISTRY/vmas:TAG .
# CUDA comes from the locked torch wheels (cu128, nvidia-* packages in requirements.lock); the base
# image brings the matching user-space runtime. The host needs an NVIDIA driver for CUDA 12.8.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=false \
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false

# Python 3.11 (the version the lock is for) from deadsnakes; git for DVC.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv git tini \
 && apt-get purge -y software-properties-common gpg-agent && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 1000 vmas && useradd --uid 1000 --gid vmas --create-home --shell /bin/bash vmas

WORKDIR /opt/vmas
# Dependencies first, with the same script and lock as `make install`: a layer that changes only
# with the lock. Then vmas itself.
COPY requirements.lock requirements-nodeps.txt ./
COPY scripts/install.sh scripts/install.sh
RUN PYTHON=python3.11 scripts/install.sh /opt/venv --deps-only
COPY pyproject.toml README.md ./
COPY src/ src/
COPY orchestration/ orchestration/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .
COPY configs/ configs/
COPY dvc.yaml params.yaml ./

ENV PATH=/opt/venv/bin:$PATH \
    VMAS_CONFIG_DIR=/opt/vmas/configs
USER vmas
WORKDIR /workspace
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["vmas", "--help"]
