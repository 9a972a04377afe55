# The execution environment image: an AWX EE whose `ansible-runner` is ftl2-runner.
#   docker build -t my-ftl2-ee .         (then use it as the job template's Execution Environment)
# Put your automation script at /opt/ftl2/main.py (COPY it in a derived image), or point job
# templates at scripts in their project.

# 1. The host binary. Built on bookworm (glibc 2.36) it asks for glibc 2.34 at most, which the
#    CentOS Stream 9 based awx-ee has (tests/test_image.py keeps it so).
FROM docker.io/library/rust:1-bookworm AS host
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY host host
COPY wit wit
RUN cargo build --release --locked

# 2. The guest component (CPython + the ftl2 API), precompiled for this exact binary: a job never
#    compiles it.
FROM docker.io/library/python:3.12-slim-bookworm AS guest
WORKDIR /src
ENV FTL2_VENV=/venv
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir componentize-py==0.25.1
COPY wit wit
COPY guest-python guest-python
RUN bash guest-python/build.sh /out/ftl2-guest.wasm
COPY --from=host /src/target/release/ftl2-runner /usr/local/bin/ftl2-runner
RUN ftl2-runner compile /out/ftl2-guest.wasm -o /out/guest.cwasm

# 3. The EE.
FROM quay.io/ansible/awx-ee:latest
USER root
COPY --from=host /src/target/release/ftl2-runner /usr/local/bin/ftl2-runner
COPY --from=guest /out/guest.cwasm /opt/ftl2/guest.cwasm
# AWX and Receptor call `ansible-runner worker ...`; answer it with ftl2-runner. The original
# stays reachable as ansible-runner.orig.
RUN set -e; orig=$(command -v ansible-runner || true); \
    if [ -n "$orig" ]; then mv "$orig" "$orig.orig"; fi; \
    ln -sf /usr/local/bin/ftl2-runner /usr/local/bin/ansible-runner
USER 1000
