#!/usr/bin/env node
// `npm start`: build the package, start Node-RED 4.1 (from devDependencies) on 127.0.0.1:1880 with a
// git-ignored user dir (.demo/), install this package into it, deploy the simulated-UPS example flow
// (the first time; later runs keep your edits) and print the editor URL.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync, spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const userDir = path.resolve(process.env.DEMO_USER_DIR || path.join(root, '.demo'));
const host = process.env.DEMO_HOST || '127.0.0.1';
const port = Number(process.env.DEMO_PORT || 1880);

execFileSync(process.execPath, [path.join(__dirname, 'build.js')], { stdio: 'inherit' });
installInto(userDir, root);
writeSettings(userDir, { host, port });
const flowFile = path.join(userDir, 'flows.json');
if (!fs.existsSync(flowFile)) {
  fs.copyFileSync(path.join(root, 'examples', '01 Simulated UPS.json'), flowFile);
}

const red = spawn(process.execPath, [require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
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

/**
 * Install the package into a Node-RED user dir the way a user would (npm install of the packed
 * tarball), so that what runs is what would be published.
 */
function installInto(dir, pkgRoot) {
  fs.mkdirSync(dir, { recursive: true });
  const pkgFile = path.join(dir, 'package.json');
  if (!fs.existsSync(pkgFile)) fs.writeFileSync(pkgFile, JSON.stringify({ name: 'node-red-demo-userdir', private: true, version: '0.0.0' }, null, 2));
  const packDir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'upsorch-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', packDir, pkgRoot], { cwd: pkgRoot, encoding: 'utf8' }).trim().split('\n').pop();
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--silent', path.join(packDir, out)], { cwd: dir, stdio: 'inherit' });
  } finally {
    fs.rmSync(packDir, { recursive: true, force: true });
  }
}

function writeSettings(dir, { host, port }) {
  const secretFile = path.join(dir, '.credential-secret');
  if (!fs.existsSync(secretFile)) fs.writeFileSync(secretFile, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
  const settings = `// Written by scripts/demo.js; rewritten at every start.
const fs = require('fs');
module.exports = {
  uiHost: ${JSON.stringify(host)},
  uiPort: ${port},
  flowFile: 'flows.json',
  credentialSecret: fs.readFileSync(${JSON.stringify(secretFile)}, 'utf8'),
  diagnostics: { enabled: false },
  telemetry: { enabled: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false } },
  editorTheme: { tours: false, palette: { catalogues: [] } },
  logging: { console: { level: 'info', metrics: false, audit: false } },
};
`;
  fs.writeFileSync(path.join(dir, 'settings.js'), settings);
}
