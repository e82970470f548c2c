#!/usr/bin/env bash
# `npm test`: install the test environment (Debian packages), build, and run the whole mocha suite in
# TypeScript (tsx) against Node-RED 4.1 and real peers on loopback. The NUT peers are started by the
# tests themselves and stopped by PID. Ends with the line `N passed, N failed`.
set -u
cd "$(dirname "$0")/.."
[ -d node_modules/node-red ] || npm install --no-audit --no-fund || exit 1
bash scripts/test-env.sh || exit 1
node scripts/build.js || exit 1
mkdir -p .test-artifacts
exec npx mocha --require tsx --reporter test/reporter.js --timeout 60000 --exit ${MOCHA_ARGS:-} 'test/**/*.test.ts'
