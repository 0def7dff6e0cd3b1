# The services image: Debian's PostgreSQL and Redis on the base image flaskbench builds from (the
# configured one where a registry answers, else the local Debian base: see execute/images.py),
# with the script that starts either (fb-service.sh) and the sampler that counts their
# connections (sampler.py, on Debian's python3 and psycopg). flaskbench/execute/services/image.py
# assembles the build context and tags the image by a hash of it.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

# The Debian packages of the config's services (PostgreSQL's major versions, Redis).
ARG PACKAGES="postgresql-15 redis-server"
# Nothing starts during the install (no init here anyway), and no cluster of Debian's own is
# made: every service gets a fresh one at its start, in a tmpfs.
RUN set -eu; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 755 /usr/sbin/policy-rc.d; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ${PACKAGES} python3 python3-psycopg; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    test ! -e /var/lib/postgresql/*/main

COPY fb-service.sh /usr/local/bin/fb-service
COPY sampler.py /opt/flaskbench/sampler.py
RUN chmod 755 /usr/local/bin/fb-service && chmod -R a+rX /opt/flaskbench
ENV LANG=C.UTF-8
USER 65534:65534
