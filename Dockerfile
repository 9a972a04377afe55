# The execution environment image: an AWX EE whose `ansible-runner` is ftl2-runner.
#   docker build -t my-ftl2-ee .         (then use it as the job template's Execution Environment)
# Put your automation script at /opt/ftl2/main.py (COPY it in a derived image), or point job
# templates at scripts in their project.
#
# The bases are build arguments, so the same file builds where registries cannot be reached:
#   EE_BASE      the execution environment to extend (default: awx-ee)
#   RUST_BASE    the image the binary is built in
#   PYTHON_BASE  the image the guest component is built in
#   ARTIFACTS    `built` (default: stages 1 and 2 build both) or `prebuilt`: take
#                `prebuilt/ftl2-runner` and `prebuilt/guest.cwasm` from the build context (the
#                guest precompiled by that same binary: `ftl2-runner compile`)
ARG EE_BASE=quay.io/ansible/awx-ee:latest
ARG RUST_BASE=docker.io/library/rust:1-bookworm
ARG PYTHON_BASE=docker.io/library/python:3.12-slim-bookworm
ARG ARTIFACTS=built

# 1. The host binary. Built on bookworm (glibc 2.36) it asks for glibc 2.34 at most, which the
#    CentOS Stream 9 based awx-ee has (tests/test_image.py keeps it so).
FROM ${RUST_BASE} AS host
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY host host
COPY wit wit
RUN cargo build --release --locked

# 2. The guest component (CPython + the ftl2 API), precompiled for this exact binary: a job never
#    compiles it.
FROM ${PYTHON_BASE} AS guest
WORKDIR /src
ENV FTL2_VENV=/venv
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir componentize-py==0.25.1
COPY wit wit
COPY guest-python guest-python
RUN bash guest-python/build.sh /out/ftl2-guest.wasm
COPY --from=host /src/target/release/ftl2-runner /usr/local/bin/ftl2-runner
RUN ftl2-runner compile /out/ftl2-guest.wasm -o /out/guest.cwasm

FROM scratch AS artifacts-built
COPY --from=host /src/target/release/ftl2-runner /ftl2-runner
COPY --from=guest /out/guest.cwasm /guest.cwasm

FROM scratch AS artifacts-prebuilt
COPY prebuilt/ftl2-runner /ftl2-runner
COPY prebuilt/guest.cwasm /guest.cwasm

FROM artifacts-${ARTIFACTS} AS artifacts

# 3. The EE.
FROM ${EE_BASE}
USER root
COPY --from=artifacts /ftl2-runner /usr/local/bin/ftl2-runner
COPY --from=artifacts /guest.cwasm /opt/ftl2/guest.cwasm
# AWX and Receptor call `ansible-runner worker ...`; answer it with ftl2-runner. The original
# stays reachable as ansible-runner.orig (project updates and inventory syncs go to it). A base
# without one fails the build: such an image could not run those jobs.
RUN set -e; orig=$(command -v ansible-runner || true); \
    if [ -z "$orig" ]; then echo "the base image has no ansible-runner to keep as ansible-runner.orig" >&2; exit 1; fi; \
    mv "$orig" "$orig.orig"; \
    ln -sf /usr/local/bin/ftl2-runner /usr/local/bin/ansible-runner; \
    /usr/local/bin/ftl2-runner --version
USER 1000
