#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages: NUT (upsd, dummy-ups, upsc, upsmon,
# snmp-ups) for the real UPS peers, openssl + libnss3-tools for upsd's STARTTLS certificate, snmpsim
# + snmp (snmptrap) for the SNMP agent, OpenSSH and libvirt (test driver) for the action peers,
# Mosquitto for MQTT, Go + govmomi's source to build VMware's vcsim, Chromium for the editor tests.
# As root it installs what is missing; otherwise it prints the command to run and fails. The peers
# themselves are started and stopped by the tests (by PID, on loopback).
set -u
PKGS=(nut-server nut-client libnss3-tools openssl chromium snmpsim snmp nut-snmp golang-go golang-github-vmware-govmomi-dev openssh-server libvirt-daemon libvirt-clients mosquitto mosquitto-clients)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "test-env: Debian packages present (${PKGS[*]})"; exit 0; }
if [ "$(id -u)" != 0 ]; then
  echo "test-env: missing Debian packages: ${missing[*]}" >&2
  echo "test-env: install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "test-env: installing ${missing[*]} (apt-get, no recommends)…"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { timeout 600 apt-get update -qq && timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -20 "$log" >&2; rm -f "$log"
  echo "test-env: apt-get failed" >&2
  exit 1
fi
rm -f "$log"
echo "test-env: installed ${missing[*]}"
