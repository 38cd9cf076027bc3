#!/usr/bin/env bash
# Builds a ~2 MB image from the host's static busybox (Debian's busybox-static) with no
# registry access, and prints its name. Used by the README's first command.
set -euo pipefail
NAME=${1:-container-snapshot-demo:busybox}
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] || { echo "demo-image: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in sh ls cat echo sleep mkdir wc id rm sha256sum; do ln -s busybox "$root/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$NAME" >/dev/null
printf '%s\n' "$NAME"
