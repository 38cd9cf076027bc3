#!/usr/bin/env bash
# Runs the integration and end-to-end tests (vitest.itg.config.ts) once per engine: one "tier"
# per engine, each with its own DOCKER_HOST and its own TMPDIR (so its own registry, state
# directory, stores and journals); the run prefix, registry port and test subnets are chosen
# per tier, so tiers never share a container, image, volume, network or port.
#
#   scripts/test-engines.sh               the engine at $DOCKER_HOST (default
#                                         unix:///var/run/docker.sock), and the current engine
#                                         of `scripts/testbed.sh engine-current` when it answers
#   TEST_ENGINES="HOST HOST…" scripts/test-engines.sh
#                                         exactly these engines; each must answer
#
# TEST_TIERS=parallel (default) runs the tiers side by side, =sequential one after another.
# Each tier's output is printed in one block after a banner naming its engine; vitest names
# the engine in every file's result too ("engine 26.1.5"). The summary gives each tier's
# engine, wall time and result, then each failed test with its message (scripts/failures.mjs);
# the exit status is non-zero when any tier failed.
# Extra arguments are passed to vitest (e.g. a test file).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

DEFAULT_HOST=unix:///var/run/docker.sock
CURRENT_HOST=${ENGINE_CURRENT_HOST:-unix:///run/docker-current.sock}
MODE=${TEST_TIERS:-parallel}

# "Engine X (API Y)" for an engine that answers; nothing otherwise (the client alone prints an
# empty server version and fails when no engine listens on the socket).
describe() {
  local v
  v=$(timeout 10 docker -H "$1" version --format '{{.Server.Version}}|{{.Server.APIVersion}}' 2>/dev/null) || return 0
  [[ -n ${v%%|*} && -n ${v#*|} ]] || return 0
  printf 'Engine %s (API %s)\n' "${v%%|*}" "${v#*|}" | sed 's/+[^ ]*//'
}

engines=()
if [[ -n ${TEST_ENGINES:-} ]]; then
  read -r -a engines <<<"$TEST_ENGINES"
else
  engines=("${DOCKER_HOST:-$DEFAULT_HOST}")
  if [[ $CURRENT_HOST != "${engines[0]}" ]]; then
    if [[ -n $(describe "$CURRENT_HOST") ]]; then
      engines+=("$CURRENT_HOST")
    else
      echo "test-engines: no current engine at $CURRENT_HOST: testing on ${engines[0]} only (start it with 'scripts/testbed.sh engine-current')"
    fi
  fi
fi
[[ $MODE == parallel || $MODE == sequential ]] || { echo "test-engines: TEST_TIERS must be parallel or sequential, got '$MODE'" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/csx-tiers-XXXXXX")
names=() logs=() pids=()

run_tier() {
  local i=$1 host=$2 tmp=$work/tier-$1/tmp start=$SECONDS rc
  mkdir -p "$tmp"
  DOCKER_HOST=$host TMPDIR=$tmp vitest run --config vitest.itg.config.ts \
    --reporter=default --reporter=json --outputFile.json="$work/tier-$i/report.json" "${@:3}" >"$work/tier-$i/log" 2>&1
  rc=$?
  printf '%s %s\n' "$rc" $((SECONDS - start)) >"$work/tier-$i/result"
  rm -rf "$tmp"
  return "$rc"
}

print_tier() {
  local i=$1 rc secs
  read -r rc secs <"$work/tier-$i/result"
  printf '\n==> tier %d: %s at %s: %s in %dm%02ds\n' "$((i + 1))" "${names[$i]}" "${engines[$i]}" "$([[ $rc == 0 ]] && echo passed || echo "FAILED (exit $rc)")" $((secs / 60)) $((secs % 60))
  cat "${logs[$i]}"
  printf '==> end of tier %d (%s)\n' "$((i + 1))" "${names[$i]}"
}

for i in "${!engines[@]}"; do
  names[i]=$(describe "${engines[$i]}")
  [[ -n ${names[$i]} ]] || names[i]="no engine answering"
  mkdir -p "$work/tier-$i"
  logs[i]=$work/tier-$i/log
  printf '==> tier %d: integration + end-to-end on %s at %s (%s; log %s)\n' "$((i + 1))" "${names[$i]}" "${engines[$i]}" "$MODE" "${logs[$i]}"
done

start=$SECONDS
if [[ $MODE == parallel ]]; then
  for i in "${!engines[@]}"; do
    run_tier "$i" "${engines[$i]}" "$@" &
    pids[i]=$!
  done
  # Print each tier's block as soon as it ends, whichever ends first.
  left=${#engines[@]}
  declare -A shown=()
  while ((left > 0)); do
    wait -n "${pids[@]}" 2>/dev/null
    gone=$?
    for i in "${!engines[@]}"; do
      if [[ -z ${shown[$i]:-} && (-e $work/tier-$i/result || $gone == 127) ]]; then
        # A tier killed before it wrote its result counts as failed.
        [[ -e $work/tier-$i/result ]] || printf '1 %s\n' $((SECONDS - start)) >"$work/tier-$i/result"
        print_tier "$i"
        shown[$i]=1
        left=$((left - 1))
      fi
    done
  done
else
  for i in "${!engines[@]}"; do
    run_tier "$i" "${engines[$i]}" "$@"
    print_tier "$i"
  done
fi

failed=0
printf '\n==> integration + end-to-end tiers (%s, %ds in all):\n' "$MODE" $((SECONDS - start))
for i in "${!engines[@]}"; do
  read -r rc secs <"$work/tier-$i/result"
  [[ $rc == 0 ]] || failed=1
  printf '    %-7s %s at %s: %dm%02ds\n' "$([[ $rc == 0 ]] && echo passed || echo FAILED)" "${names[$i]}" "${engines[$i]}" $((secs / 60)) $((secs % 60))
done
# Last, what failed and why (each failure's message, not its stack): the tail of a CI log shows it.
if ((failed)); then
  printf '\n==> failed tests:\n'
  for i in "${!engines[@]}"; do
    read -r rc secs <"$work/tier-$i/result"
    [[ $rc == 0 ]] || node scripts/failures.mjs "$work/tier-$i/report.json" "[${names[$i]}] "
  done
fi
rm -rf "$work"
exit "$failed"
