# The one image recipe for both stacks: the target (targets/, served from /app) and the Locust
# swarm (locustfiles/, run from /locust). flaskbench/images.py assembles each build context from
# the folder's *.py and pinned requirements.txt, this file, and extra-ca.pem (maybe empty).
# Works on python:3.12-slim and on a debootstrapped Debian with python3 and python3-venv.
# Containers run with a read-only root filesystem, so everything is installed here.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ARG APP_DIR=/app
# Optional package index settings, for hosts that cannot reach PyPI directly.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

COPY requirements.txt extra-ca.pem /tmp/build/
# Behind a TLS-inspecting proxy pip must trust its CA as well as pip's own bundle; the combined
# bundle serves this install only. Index variables not given stay unset: pip reads an empty one
# as an index.
RUN set -eu; \
    python3 -m venv /opt/venv; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; \
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    if [ -s /tmp/build/extra-ca.pem ]; then \
        bundle=$(/opt/venv/bin/python -c 'import pip._vendor.certifi as c; print(c.where())'); \
        { cat "$bundle"; echo; cat /tmp/build/extra-ca.pem; } > /tmp/build/ca.pem; \
        export PIP_CERT=/tmp/build/ca.pem; \
    fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /tmp/build/requirements.txt; \
    rm -rf /tmp/build

COPY *.py ${APP_DIR}/
# Readable by the unprivileged user whatever modes the build context had.
RUN chmod -R a+rX ${APP_DIR}
WORKDIR ${APP_DIR}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65534:65534
