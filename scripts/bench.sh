#!/usr/bin/env bash
# `npm run bench`: latency and cost benchmarks against a real upsd on loopback (needs root and
# Debian's nut-server/nut-client, like the test suite), then the decision engine. Measures and
# prints; never asserts timings. BENCH_SECONDS (default 60) sets the length of each load run.
set -u
cd "$(dirname "$0")/.."
npx tsx bench/bench.ts || exit 1
npx tsx bench/decide.ts || exit 1
npx tsx bench/plan.ts || exit 1
npx tsx bench/nut-server.ts || exit 1
npx tsx bench/snmp.ts || exit 1
npx tsx bench/vsphere.ts || exit 1
