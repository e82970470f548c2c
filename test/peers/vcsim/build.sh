#!/usr/bin/env bash
# Builds the test bed's vcsim (VMware's vCenter/ESXi simulator) from Debian's govmomi 0.24 source
# (golang-github-vmware-govmomi-dev, golang-go) with this folder's main.go and upsorch_ext.go, in
# GOPATH mode against a private copy of /usr/share/gocode/src/github.com/vmware/govmomi.
#
#   build.sh [OUT_DIR]     default OUT_DIR: <repo>/.peers/vcsim (git-ignored)
#
# Prints the path of the binary on its last line. Cached: rebuilds only when an input changes
# (this script, main.go, upsorch_ext.go, the govmomi package version, the Go version). Bounded:
# the compile gets at most VCSIM_BUILD_TIMEOUT seconds (default 300). A lock keeps two test
# processes from building at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/.peers/vcsim}
src=/usr/share/gocode/src/github.com/vmware/govmomi
mkdir -p "$out"

for tool in go dpkg-query sha256sum flock; do
  command -v "$tool" >/dev/null || { echo "vcsim build: '$tool' not found (Debian packages: golang-go golang-github-vmware-govmomi-dev; run scripts/test-env.sh)" >&2; exit 2; }
done
[ -d "$src/simulator" ] || { echo "vcsim build: $src missing (apt-get install golang-github-vmware-govmomi-dev)" >&2; exit 2; }

exec 9>"$out/.lock"
flock -w "${VCSIM_BUILD_TIMEOUT:-300}" 9 || { echo "vcsim build: another build holds $out/.lock" >&2; exit 3; }

key=$( { cat "$here/build.sh" "$here/main.go" "$here/upsorch_ext.go"; dpkg-query -W -f='${Version}' golang-github-vmware-govmomi-dev; go version; } | sha256sum | cut -c1-16)
bin=$out/vcsim-$key
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

t0=$(date +%s%N)
gopath=$out/gopath
rm -rf "$gopath" "$out"/vcsim-*
mkdir -p "$gopath/src/github.com/vmware" "$gopath/src/upsorch-vcsim"
cp -r "$src" "$gopath/src/github.com/vmware/govmomi"
chmod -R u+w "$gopath"
sim=$gopath/src/github.com/vmware/govmomi/simulator

# The four edits upsorch_ext.go relies on; each must match exactly once.
edit() { # edit FILE SED_EXPR CHECK_PATTERN
  sed -i "$2" "$1"
  [ "$(grep -c "$3" "$1")" = 1 ] || { echo "vcsim build: patch point '$3' not found once in $1 (govmomi version changed?)" >&2; exit 4; }
}
edit "$sim/virtual_machine.go" 's/^func (vm \*VirtualMachine) ShutdownGuest(/func (vm *VirtualMachine) shutdownGuestStock(/' '^func (vm \*VirtualMachine) shutdownGuestStock('
edit "$sim/property_collector.go" 's/^func (pc \*PropertyCollector) RetrievePropertiesEx(/func (pc *PropertyCollector) retrievePropertiesExStock(/' '^func (pc \*PropertyCollector) retrievePropertiesExStock('
edit "$sim/host_system.go" 's/^func (h \*HostSystem) EnterMaintenanceModeTask(/func (h *HostSystem) enterMaintenanceModeTaskStock(/' '^func (h \*HostSystem) enterMaintenanceModeTaskStock('
edit "$sim/simulator.go" 's|^\t// We have a valid call. Introduce a delay if requested|\tif upsorchCallHook != nil {\n\t\tif r := upsorchCallHook(ctx, method); r != nil {\n\t\t\treturn r\n\t\t}\n\t}\n&|' 'upsorchCallHook(ctx, method)'

cp "$here/upsorch_ext.go" "$sim/upsorch_ext.go"
cp "$here/main.go" "$gopath/src/upsorch-vcsim/main.go"
log=$out/build.log
if ! ( cd "$gopath" && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$out/gocache" GOFLAGS= GOPROXY=off \
      timeout "${VCSIM_BUILD_TIMEOUT:-300}" go build -o "$bin.tmp" upsorch-vcsim ) >"$log" 2>&1; then
  tail -30 "$log" >&2
  echo "vcsim build: go build failed (log: $log)" >&2
  exit 5
fi
mv "$bin.tmp" "$bin"
rm -rf "$gopath"
echo "vcsim build: built in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
echo "$bin"
