# A target image: one environment targets are served from (flaskbench/execute/environments.py),
# the harness (the package flaskbench_target, in /harness) and the app. flaskbench/execute/
# images.py assembles the build context: build/ (envbuild.py, its spec.json, every server's pins
# and, for the built-in app, its requirements), code/ (the package), this file, extra-ca.pem
# (maybe empty), tree/, a snapshot of a user's app (empty for the built-in app), and reqs/, what
# of it the installation reads (its requirement files, or all of it for a project). Works on
# python:3.12-slim and on a debootstrapped Debian with python3 and python3-venv. Containers run
# with a read-only root filesystem, so everything is installed here.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ARG CODE_DIR=/harness
ARG TREE_DIR=/srv/app
# Optional package index settings, for hosts that cannot reach PyPI directly. Index variables
# not given stay unset: pip reads an empty one as an index.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

# The environment first, from reqs/ alone, so that a change to the app's code (tree/, below)
# reuses it: the app's requirements as they are and the servers at the versions pip's resolver
# finds beside them, installed from a copy (so a version a target asks for can leave the app's
# own pin of it out of the copy). envbuild.py writes what it installed to
# /opt/venv/flaskbench-env.json. Behind a TLS-inspecting proxy pip must trust its CA as well as
# pip's own bundle: the combined bundle goes into the venv's pip.conf, which every pip call here
# reads.
COPY build/ extra-ca.pem /opt/build/
COPY reqs/ /opt/build/app/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; \
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    if [ -s /opt/build/extra-ca.pem ]; then \
        bundle=$(/opt/venv/bin/python -c 'import pip._vendor.certifi as c; print(c.where())'); \
        { cat "$bundle"; echo; cat /opt/build/extra-ca.pem; } > /opt/build/ca.pem; \
        printf '[global]\ncert = /opt/build/ca.pem\n' > /opt/venv/pip.conf; \
    fi; \
    cp -a /opt/build/app /tmp/tree; \
    cd /tmp/tree; \
    /opt/venv/bin/python /opt/build/envbuild.py /opt/build/spec.json; \
    cd /; rm -rf /tmp/tree; \
    chmod -R a+rX /opt/venv

# Debian packages a run needs beside Python (a reverse proxy in front of a target: its module
# in flaskbench/proxies/ names them), installed from the base image's own package sources, never
# started here (no init: Debian's scripts leave the service alone). Declared here, after the
# environment's layer, so that an image with them shares that layer with one without.
ARG SYSTEM_PACKAGES=
RUN set -eu; \
    if [ -n "$SYSTEM_PACKAGES" ]; then \
        apt-get update -q; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $SYSTEM_PACKAGES; \
        rm -rf /var/lib/apt/lists/*; \
    fi

COPY tree/ ${TREE_DIR}/
COPY code/ ${CODE_DIR}/
# Readable by the unprivileged user whatever modes the build context had. /results is where a
# cell's processes write their raw files: a volume per container that starts as this empty,
# world-writable directory, read back through the engine once the container has stopped.
RUN chmod -R a+rX "$TREE_DIR" ${CODE_DIR} && mkdir -m 1777 /results
WORKDIR ${CODE_DIR}
# The harness's package is on the import path of whatever runs here, after the module's own
# directory (the launcher puts the app's directory first for the server).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=${CODE_DIR} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65534:65534
