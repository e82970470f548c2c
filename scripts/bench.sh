#!/usr/bin/env bash
# `npm run bench`: benchmarks against real peers on loopback (needs root and the Debian packages of
# the test suite): NUT detection latency and polling cost, the decision engine, the run machinery's
# overhead per target, the NUT server under 200 clients, SNMP poll cost and trap latency, and 500
# VMs on vcsim. Measures and prints; never asserts timings. BENCH_SECONDS (default 60) sets the
# length of each load run.
set -u
cd "$(dirname "$0")/.."
npx tsx bench/bench.ts || exit 1
npx tsx bench/decide.ts || exit 1
npx tsx bench/plan.ts || exit 1
npx tsx bench/nut-server.ts || exit 1
npx tsx bench/snmp.ts || exit 1
npx tsx bench/vsphere.ts || exit 1
