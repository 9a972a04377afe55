# The execution environment image: an AWX EE whose `ansible-runner` is ftl2-runner.
# (Minimal for now: the sandbox issue adds the precompiled guest component and /opt/ftl2/main.py.)
# Build: docker build -t my-ftl2-ee .   Use it as the job template's Execution Environment.

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY host host
RUN cargo build --release --locked

FROM quay.io/ansible/awx-ee:latest
USER root
COPY --from=build /src/target/release/ftl2-runner /usr/local/bin/ftl2-runner
# AWX and Receptor call `ansible-runner worker ...`; answer it with ftl2-runner. The original
# stays reachable as ansible-runner.orig for comparison.
RUN set -e; orig=$(command -v ansible-runner || true); \
    if [ -n "$orig" ]; then mv "$orig" "$orig.orig"; fi; \
    ln -sf /usr/local/bin/ftl2-runner /usr/local/bin/ansible-runner
USER 1000
