#!/usr/bin/env bash
# An AWX-EE-like base image made from Debian's packages, for building and testing our image
# where container registries cannot be reached: Debian minbase + python3 + the original
# ansible-runner (Debian's), ansible-core 2.15 from PyPI (awx-ee pins 2.15; Debian's 2.14 is
# older than what ftl2-runner builds modules with), user 1000 (group 0, HOME /home/runner) and
# a /runner it may write, as awx-ee has them. pip inside the new root uses this machine's CA
# bundle (for an egress proxy); ansible-core's dependencies are Debian's.
#   bash tests/ee_base.sh            prints the image name; builds it unless podman has it
# The root filesystem (mmdebstrap and pip, ~90 s) is cached in ~/.cache/ftl2-runner/image/.
set -euo pipefail
IMAGE=localhost/ftl2-ee-base:2
CACHE=${FTL2_IMAGE_CACHE:-$HOME/.cache/ftl2-runner/image}
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)

if "${PODMAN[@]}" image exists "$IMAGE"; then
  echo "$IMAGE"
  exit 0
fi
mkdir -p "$CACHE"
ROOTFS=$CACHE/bookworm-ee-2.tar
PARTIAL=$CACHE/partial-bookworm-ee-2.tar  # mmdebstrap picks the format by the extension
if [ ! -s "$ROOTFS" ]; then
  rm -rf "$PARTIAL"
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-pip,ansible-core,python3-ansible-runner,ca-certificates \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/tmp/ftl2-ca.crt"' \
    --customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PIP_CERT=/tmp/ftl2-ca.crt PIP_ROOT_USER_ACTION=ignore pip3 install -q --no-cache-dir --no-deps --no-warn-script-location --break-system-packages ansible-core==2.15.13' \
    --customize-hook='rm -f "$1/tmp/ftl2-ca.crt"' \
    bookworm "$PARTIAL" >&2
  mv "$PARTIAL" "$ROOTFS"
fi
"${PODMAN[@]}" import -q "$ROOTFS" localhost/ftl2-ee-rootfs:2 >/dev/null
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cat > "$ctx/Containerfile" <<'EOF'
FROM localhost/ftl2-ee-rootfs:2
RUN useradd --uid 1000 --gid 0 --home-dir /home/runner --create-home runner \
 && mkdir -p /runner && chown 1000:0 /runner && chmod 0775 /runner
ENV HOME=/home/runner
WORKDIR /runner
USER 1000
EOF
"${PODMAN[@]}" build -q --network none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
  -t "$IMAGE" "$ctx" >/dev/null
echo "$IMAGE"
