# The charlm image for docker and kubernetes work pools: the same code a process worker runs
# from the checkout (docs/deployments-split.md).
#
#   docker build -t charlm:cpu .                          # charlm-cpu: ingest, feeds, generate
#   docker build -t charlm:gpu --build-arg EXTRAS=gpu .   # charlm-gpu: CUDA TensorFlow
#
# Flow runs start in /app (prefect.yaml's pull step changes into $CHARLM_PROJECT_DIR) and
# find the flows' entrypoints there; the store comes from the deployment's CHARLM_STORAGE.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# Extras of pyproject.toml to install, comma-separated ("gpu": tensorflow[and-cuda]).
ARG EXTRAS=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHARLM_PROJECT_DIR=/app \
    TF_CPP_MIN_LOG_LEVEL=2

# g++ builds charlm's fused CPU recurrent kernels (charlm/kernels.py): in the image, below,
# and again in a container whose CPU differs from the one that built the image (the build is
# keyed by the CPU's flags: -march=native); without it training still runs, on Keras'
# slower loops, and says so.
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Metadata first, so a code change does not reinstall TensorFlow: the dependencies are
# installed in their own layer from pyproject.toml alone.
COPY pyproject.toml README.md ./
RUN python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extras = [e for e in os.environ["EXTRAS"].split(",") if e]; \
print("\n".join(p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' \
    > /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY charlm/ charlm/
COPY ingestion/ ingestion/
COPY storage/ storage/
COPY tasks/ tasks/
COPY flows/ flows/
COPY cli/ cli/
COPY prefect.yaml ./
# The project itself (the `charlm` command, the packages flow runs import).
RUN pip install --no-deps .
# The kernels, built and checked once in the image rather than at every container's first
# training: in a folder any user reads (containers may run as another user, read-only). A
# container on another CPU builds its own once, here if the folder is writable, else in a
# private folder under $TMPDIR; `charlm kernels` fails the image build if they cannot be
# built (the cause is its last line).
ENV CHARLM_KERNEL_DIR=/opt/charlm/kernels
RUN charlm kernels && chmod -R a+rX /opt/charlm
