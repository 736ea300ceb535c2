#!/usr/bin/env bash
# Make a Docker daemon answer on this machine, for the harness's container-based scenarios.
# Shipped with the package and run by `harness setup --docker` (scripts/install-docker.sh calls it too).
#
# Idempotent: exits 0 at once when `docker info` already answers. Otherwise (as root) installs
# Debian's docker.io (dockerd, containerd, runc, iptables) and debootstrap (to build base images
# locally, since no container registry is reachable), starts dockerd in the background and waits
# until it answers.
#
# dockerd flags, and why:
#   --ip-forward=false --ip-masq=false
#       containers must never reach anything beyond this machine: no IP forwarding, no NAT.
#       Containers still talk to each other on a shared bridge (layer 2), the host reaches them on
#       their bridge addresses, and ports published on 127.0.0.1 go through docker-proxy.
#   --iptables=true (the default) is kept: the kernel has nf_tables + xt compat, and the embedded
#       DNS of user-defined networks (container names) needs it.
#   storage overlay2 and the cgroupfs cgroup driver (cgroup v1, no systemd as PID 1) are dockerd's
#       defaults here and are set explicitly so a surprise shows up as an error, not a slow vfs.
#
# Environment: DOCKERD_LOG (default /var/log/harness-dockerd.log), DOCKERD_WAIT (seconds, default 60).
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/harness-dockerd.log}"
WAIT="${DOCKERD_WAIT:-60}"

if docker info >/dev/null 2>&1; then
    echo "install-docker: docker daemon already answers"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "install-docker: error: no docker daemon answers and this is not root, so none can be started." >&2
    echo "  hint: run this script as root, or point DOCKER_HOST at a running daemon." >&2
    exit 1
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if ((${#need[@]})); then
    echo "install-docker: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log="$(mktemp)"
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        echo "install-docker: error: apt-get could not install ${need[*]} (full log: $apt_log)." >&2
        echo "  hint: check the Debian sources in /etc/apt/sources.list.d/ and that the mirror answers." >&2
        exit 1
    fi
    rm -f "$apt_log"
fi

if pgrep -x dockerd >/dev/null; then
    echo "install-docker: a dockerd process exists but does not answer yet; waiting for it"
else
    echo "install-docker: starting dockerd (log: $LOG)"
    mkdir -p "$(dirname "$LOG")"
    nohup dockerd \
        --ip-forward=false \
        --ip-masq=false \
        --storage-driver=overlay2 \
        --exec-opt native.cgroupdriver=cgroupfs \
        >>"$LOG" 2>&1 </dev/null &
    disown || true
fi

deadline=$((SECONDS + WAIT))
until docker info >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo "install-docker: error: dockerd did not answer 'docker info' within ${WAIT}s." >&2
        echo "  last lines of $LOG:" >&2
        tail -n 15 "$LOG" >&2 || true
        echo "  hint: look for 'failed to start' in $LOG (storage driver, iptables or cgroups);" >&2
        echo "        a stale /var/run/docker.pid from a dead daemon can be removed; raise DOCKERD_WAIT if slow;" >&2
        echo "        DOCKER_HOST=${DOCKER_HOST:-(unset)} must match where dockerd listens (/var/run/docker.sock)." >&2
        exit 1
    fi
    sleep 1
done

if [[ "$(sysctl -n net.ipv4.ip_forward 2>/dev/null || echo 0)" != "0" ]]; then
    echo "install-docker: warning: net.ipv4.ip_forward is 1 on this host; containers may route beyond it." >&2
fi
echo "install-docker: docker daemon answers ($(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}}'))"
