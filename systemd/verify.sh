#!/usr/bin/env bash
# Checks the unit as CI and reviewers do: `systemd-analyze verify` must print nothing and succeed,
# and `systemd-analyze security --offline=true` must rate it at most MAX_EXPOSURE (1.5, "OK").
#
# verify insists that ExecStart's binary exists, and /opt/tidegate does not on a build machine, so
# the unit is verified inside a throwaway root holding the host's own units (for sysinit.target and
# friends) and an executable stand-in at each Exec path the unit names.
#
# Usage: systemd/verify.sh [UNIT_FILE]   (exit 0 ok, 1 failed, 77 systemd-analyze missing)
set -euo pipefail

unit=${1:-"$(dirname "$0")/tidegate.service"}
max=${MAX_EXPOSURE:-1.5}
name=$(basename "$unit")

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "verify.sh: systemd-analyze not found (apt-get install systemd)" >&2
  exit 77
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/tidegate-verify.XXXXXX")
trap 'rm -rf "$root"' EXIT

units=
for dir in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -d "$dir" ]; then units=$dir; break; fi
done
if [ -z "$units" ]; then
  echo "verify.sh: no systemd unit directory on this machine" >&2
  exit 77
fi
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -r "$units" "$root/usr/lib/systemd/system"
cp "$unit" "$root/etc/systemd/system/$name"

# Exec*=[-@:+!]/path args… → a stand-in executable at /path inside the root.
grep -E '^Exec[A-Za-z]*=' "$unit" | sed -E 's/^[^=]+=[-@:+!]*//; s/[[:space:]].*$//' | while read -r bin; do
  case $bin in
    /*)
      mkdir -p "$root$(dirname "$bin")"
      printf '#!/bin/sh\n' >"$root$bin"
      chmod 755 "$root$bin"
      ;;
  esac
done

status=0
out=$(systemd-analyze verify --root="$root" "/etc/systemd/system/$name" 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
  echo "verify.sh: systemd-analyze verify $name failed (exit $status):" >&2
  echo "$out" >&2
  exit 1
fi
echo "systemd-analyze verify $name: OK"

report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
line=$(printf '%s\n' "$report" | grep -E 'Overall exposure level' | tail -n1 || true)
score=$(printf '%s\n' "$line" | sed -nE 's/.*: ([0-9]+(\.[0-9]+)?) .*/\1/p')
if [ -z "$score" ]; then
  echo "verify.sh: no exposure level in the output of systemd-analyze security:" >&2
  echo "$report" >&2
  exit 1
fi
if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
  printf '%s\n' "$report" | grep -E '✗' >&2 || true
  echo "verify.sh: exposure $score is above $max" >&2
  exit 1
fi
echo "systemd-analyze security $name: exposure $score (≤ $max)"
