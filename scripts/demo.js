#!/usr/bin/env node
// `npm start`: build the package, start Node-RED 4.1 (from devDependencies) on 127.0.0.1:1880 with a
// git-ignored user dir (.demo/), install this package into it, deploy the simulated-UPS example flow
// (the first time; later runs keep your edits) and print the editor URL.
// The user dir is prepared by scripts/nodered-userdir.js, as in the editor tests.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { installInto, startNodeRed } = require('./nodered-userdir');

const root = path.resolve(__dirname, '..');
const userDir = path.resolve(process.env.DEMO_USER_DIR || path.join(root, '.demo'));
const host = process.env.DEMO_HOST || '127.0.0.1';
const port = Number(process.env.DEMO_PORT || 1880);

execFileSync(process.execPath, [path.join(__dirname, 'build.js')], { stdio: 'inherit' });
installInto(userDir, root);
const flowFile = path.join(userDir, 'flows.json');
if (!fs.existsSync(flowFile)) {
  fs.copyFileSync(path.join(root, 'examples', '01 Simulated UPS.json'), flowFile);
}

const red = startNodeRed({ userDir, host, port, stdio: ['ignore', 'pipe', 'inherit'] });
let announced = false;
red.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  if (!announced && /Started flows|Server now running/.test(String(chunk))) {
    announced = true;
    setTimeout(() => console.log(`\n  Node-RED editor: http://${host}:${port}/\n  (user dir ${path.relative(root, userDir) || userDir}; Ctrl-C stops)\n`), 200);
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => red.kill('SIGINT'));
red.on('exit', (code) => process.exit(code ?? 0));
