#!/usr/bin/env bash
# Make a Docker daemon answer on this machine: the script `harness setup --docker` runs, which ships
# with the package as harness/data/install-docker.sh (see there for what it does and why).
exec bash "$(dirname "$0")/../harness/data/install-docker.sh" "$@"
