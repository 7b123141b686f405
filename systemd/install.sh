#!/usr/bin/env bash
# Installs tidegate as a systemd service, or removes it. Idempotent: a second run with the same
# build changes nothing. Run from a built checkout (`npm ci` has built dist/):
#
#   sudo systemd/install.sh                 install or upgrade, enable and (re)start
#   sudo systemd/install.sh --uninstall     remove the unit and /opt/tidegate; keep config and data
#   sudo systemd/install.sh --uninstall --purge   … and /etc/tidegate, /var/lib/tidegate, the user
#
# Options:
#   --prefix DIR   install into DIR instead of / (a throwaway root for tests or an image build);
#                  no user is created and systemctl is not called inside a prefix
#   --no-user      do not create the tidegate system user
#   --no-start     enable the unit but do not (re)start it
#   --deps MODE    node_modules in /opt/tidegate: npm (`npm ci --omit=dev`, the default for /),
#                  copy (the production packages of this checkout's node_modules, the default
#                  inside a prefix; needs the same Node ABI and CPU), none
#
# Layout: /opt/tidegate (build, owned by root), /etc/tidegate/{gateway,rules}.yaml (never
# overwritten), /etc/systemd/system/tidegate.service, /var/lib/tidegate (created by systemd's
# StateDirectory= on start).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=/
uninstall=0
purge=0
make_user=1
start=1
deps=

usage() { sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "tidegate: $*"; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    --no-user) make_user=0; shift ;;
    --no-start) start=0; shift ;;
    --deps) [ $# -ge 2 ] || die "--deps needs npm, copy or none"; deps=$2; shift 2 ;;
    --deps=*) deps=${1#--deps=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ $purge -eq 0 ] || [ $uninstall -eq 1 ] || die "--purge goes with --uninstall"

prefix=${prefix%/}
in_prefix=0
[ -z "$prefix" ] || in_prefix=1
if [ $in_prefix -eq 1 ]; then
  mkdir -p "$prefix"
  prefix=$(cd "$prefix" && pwd)
fi
[ -n "$deps" ] || { if [ $in_prefix -eq 1 ]; then deps=copy; else deps=npm; fi; }
case $deps in npm | copy | none) ;; *) die "--deps: expected npm, copy or none, found $deps" ;; esac

OPT=$prefix/opt/tidegate
ETC=$prefix/etc/tidegate
VAR=$prefix/var/lib/tidegate
UNIT=$prefix/etc/systemd/system/tidegate.service

# systemctl only for the real system, and only when systemd runs it.
use_systemctl=0
if [ $in_prefix -eq 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  use_systemctl=1
fi
if [ $in_prefix -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  die "installing into / needs root (sudo), or use --prefix DIR"
fi

# --- uninstall ---------------------------------------------------------------------------------
if [ $uninstall -eq 1 ]; then
  if [ $use_systemctl -eq 1 ] && [ -f "$UNIT" ]; then
    systemctl disable --now tidegate.service || true
  fi
  [ ! -e "$UNIT" ] || { rm -f "$UNIT"; say "removed $UNIT"; }
  [ $use_systemctl -eq 0 ] || systemctl daemon-reload
  [ ! -e "$OPT" ] || { rm -rf "$OPT"; say "removed $OPT"; }
  if [ $purge -eq 1 ]; then
    rm -rf "$ETC" "$VAR"
    say "removed $ETC and $VAR"
    if [ $in_prefix -eq 0 ] && getent passwd tidegate >/dev/null; then
      userdel tidegate && say "removed the user tidegate"
    fi
  else
    say "kept $ETC and $VAR (--purge removes them)"
  fi
  exit 0
fi

# --- install -----------------------------------------------------------------------------------
[ -f "$SRC/dist/cli.js" ] || die "no build in $SRC/dist: run npm ci (or npm run build) first"
command -v diff >/dev/null || die "diff is needed (diffutils)"

# 1. The user: system account, no login, no home of its own beyond the state directory; serial
#    access comes from SupplementaryGroups=dialout in the unit, not from group membership here.
if [ $make_user -eq 1 ] && [ $in_prefix -eq 0 ]; then
  if ! getent passwd tidegate >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/tidegate --no-create-home \
      --shell /usr/sbin/nologin --comment "tidegate IoT gateway" tidegate
    say "created the system user tidegate"
  fi
fi

# 2. The build, staged next to /opt/tidegate and swapped in only if it differs from what is there.
mkdir -p "$prefix/opt"
stage=$(mktemp -d "$prefix/opt/.tidegate.XXXXXX")
trap 'rm -rf "$stage"' EXIT
for item in dist config devices docs systemd package.json package-lock.json README.md LICENSE; do
  [ ! -e "$SRC/$item" ] || cp -a "$SRC/$item" "$stage/"
done
rm -f "$stage"/dist/*.tsbuildinfo

abi="node $(node -p 'process.versions.modules' 2>/dev/null || echo unknown) $(uname -m)"
case $deps in
  npm)
    command -v npm >/dev/null || die "npm not found (install Node.js ≥ 20, see docs/raspberry-pi.md)"
    if [ -d "$OPT/node_modules" ] && cmp -s "$OPT/package-lock.json" "$SRC/package-lock.json" \
      && [ "$(cat "$OPT/.node-abi" 2>/dev/null)" = "$abi" ]; then
      cp -a "$OPT/node_modules" "$stage/" # same lockfile, same Node ABI: nothing to rebuild
    else
      say "npm ci --omit=dev (compiles better-sqlite3 where no prebuilt binary fits: a minute or two)"
      # The build script (prepare) needs dev dependencies, and dist/ is already built.
      (cd "$stage" && npm pkg delete scripts.prepare >/dev/null && npm ci --omit=dev --no-audit --no-fund)
    fi
    echo "$abi" >"$stage/.node-abi"
    ;;
  copy)
    [ -d "$SRC/node_modules" ] || die "--deps copy: $SRC/node_modules is missing"
    if command -v npm >/dev/null && paths=$(cd "$SRC" && npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2); then
      # Production packages only, each once (a nested package is inside its parent's copy).
      printf '%s\n' "$paths" | sed "s|^$SRC/||" | awk '{ for (p in kept) if (index($0, p "/") == 1) next; kept[$0] = 1; print }' |
        (cd "$SRC" && xargs -r cp -a --parents -t "$stage")
    else
      cp -a "$SRC/node_modules" "$stage/"
    fi
    echo "$abi" >"$stage/.node-abi"
    ;;
  none) ;;
esac
chmod 755 "$stage"

if [ -d "$OPT" ] && diff -rq --no-dereference "$stage" "$OPT" >/dev/null 2>&1; then
  say "$OPT is up to date"
else
  if [ -e "$OPT" ]; then
    mv "$OPT" "$OPT.old"
    mv "$stage" "$OPT"
    rm -rf "$OPT.old"
    say "upgraded $OPT"
  else
    mv "$stage" "$OPT"
    say "installed $OPT"
  fi
  changed_build=1
fi

# 3. Configuration: the shipped defaults, never over an existing file. The store path is set by
#    the unit (TIDEGATE_STORE__PATH); the default's other relative paths (rules, device profiles)
#    would resolve against /var/lib/tidegate, so the /etc copy names them absolutely.
defaults=$(mktemp -d)
trap 'rm -rf "$stage" "$defaults"' EXIT
sed -E -e 's|^rules:([[:space:]]*)config/rules.yaml|rules:\1/etc/tidegate/rules.yaml|' \
  -e '/^rules:/a devicesDir: /opt/tidegate/devices     # Modbus device profiles' \
  "$SRC/config/gateway.yaml" >"$defaults/gateway.yaml"
cp "$SRC/config/rules.yaml" "$defaults/rules.yaml"
install -d -m 0755 "$prefix/etc"
install -d -m 0750 "$ETC"
for file in gateway.yaml rules.yaml; do
  if [ -e "$ETC/$file" ]; then
    cmp -s "$defaults/$file" "$ETC/$file" || say "kept your $ETC/$file (the shipped default is in $OPT/config)"
  else
    install -m 0640 "$defaults/$file" "$ETC/$file"
    say "installed $ETC/$file"
  fi
done
if [ $in_prefix -eq 0 ] && getent group tidegate >/dev/null; then
  chgrp tidegate "$ETC" "$ETC/gateway.yaml" "$ETC/rules.yaml"
fi

# 4. The unit.
install -d -m 0755 "$prefix/etc/systemd/system"
if cmp -s "$SRC/systemd/tidegate.service" "$UNIT"; then
  say "$UNIT is up to date"
  changed_unit=0
else
  install -m 0644 "$SRC/systemd/tidegate.service" "$UNIT"
  say "installed $UNIT"
  changed_unit=1
fi

if [ $use_systemctl -eq 1 ]; then
  [ "$changed_unit" -eq 0 ] || systemctl daemon-reload
  systemctl is-enabled --quiet tidegate.service 2>/dev/null || systemctl enable tidegate.service
  if [ $start -eq 1 ]; then
    if [ "$changed_unit" -eq 1 ] || [ "${changed_build:-0}" -eq 1 ] || ! systemctl is-active --quiet tidegate.service; then
      systemctl restart tidegate.service
      say "started: journalctl -u tidegate -f"
    fi
  fi
elif [ $in_prefix -eq 1 ]; then
  say "inside $prefix: no user created and systemctl not called"
else
  say "systemd is not running: enable it later with systemctl enable --now tidegate"
fi
