# The Locust swarm's image (locustfiles/, run from /locust; target images have their own recipe,
# target.Dockerfile). flaskbench/execute/images.py assembles each build context: code/ (the
# folder's *.py), requirements.txt (the pins of what generates load), this file, extra-ca.pem
# (maybe empty) and tree/, a snapshot of a user's Locust files (maybe empty). Works on python:3.12-slim and on a debootstrapped Debian with python3 and python3-venv.
# Containers run with a read-only root filesystem, so everything is installed here.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ARG CODE_DIR=/harness
# Optional package index settings, for hosts that cannot reach PyPI directly. Index variables
# not given stay unset: pip reads an empty one as an index.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

# First the pins, which change rarely, so that this layer is reused when only the tree changes.
# Behind a TLS-inspecting proxy pip must trust its CA as well as pip's own bundle: the combined
# bundle goes into the venv's pip.conf, which every later pip call here reads.
COPY requirements.txt extra-ca.pem /opt/build/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; \
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    if [ -s /opt/build/extra-ca.pem ]; then \
        bundle=$(/opt/venv/bin/python -c 'import pip._vendor.certifi as c; print(c.where())'); \
        { cat "$bundle"; echo; cat /opt/build/extra-ca.pem; } > /opt/build/ca.pem; \
        printf '[global]\ncert = /opt/build/ca.pem\n' > /opt/venv/pip.conf; \
    fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /opt/build/requirements.txt

# Then the tree and what it needs (its requirements file, TREE_REQUIREMENTS, relative to it, or
# with INSTALL_TREE=1 the project itself), constrained to the pins above, which it must keep.
# It is installed from a copy, so the tree stays as the user wrote it.
ARG TREE_DIR=/srv/app
ARG TREE_REQUIREMENTS=
ARG INSTALL_TREE=0
COPY tree/ ${TREE_DIR}/
RUN set -eu; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; \
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    if [ -n "$TREE_REQUIREMENTS" ] || [ "$INSTALL_TREE" = 1 ]; then \
        cp -a "$TREE_DIR" /tmp/tree; \
        cd /tmp/tree; \
        set -- -c /opt/build/requirements.txt; \
        [ -z "$TREE_REQUIREMENTS" ] || set -- "$@" -r "$TREE_REQUIREMENTS"; \
        [ "$INSTALL_TREE" != 1 ] || set -- "$@" .; \
        /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$@"; \
        cd /; rm -rf /tmp/tree; \
    fi; \
    chmod -R a+rX "$TREE_DIR"

COPY code/ ${CODE_DIR}/
# Readable by the unprivileged user whatever modes the build context had. /results is where a
# cell's processes write their raw files: a volume per container that starts as this empty,
# world-writable directory, read back through the engine once the container has stopped. The
# run's Locust master takes its orders from /inbox and writes each cell's files into
# /cells/<cell>, volumes as well, read and written through the engine while it runs.
RUN chmod -R a+rX ${CODE_DIR} && mkdir -m 1777 /results /cells /inbox
WORKDIR ${CODE_DIR}
# The code's own directory is on the import path of whatever runs here (the harness's package,
# or the Locust files), after the script's or module's own directory.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=${CODE_DIR} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65534:65534
