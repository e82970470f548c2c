// One way of preparing a Node-RED user dir with this package installed, shared by `npm start`
// (scripts/demo.js) and the editor tests (test/editor.browser.test.ts):
//   installInto(dir, pkgRoot)         npm pack this package and npm install the tarball into dir
//   writeSettings(dir, {host, port})  settings.js (loopback, no telemetry, no palette installs)
//   startNodeRed({userDir, host, port, stdio})  writeSettings + spawn Node-RED 4.1 from devDependencies
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync, spawn } = require('node:child_process');

/**
 * Install the package into a Node-RED user dir the way a user would (npm install of the packed
 * tarball), so that what runs is what would be published. dist/ must be built first.
 */
function installInto(dir, pkgRoot) {
  fs.mkdirSync(dir, { recursive: true });
  const pkgFile = path.join(dir, 'package.json');
  if (!fs.existsSync(pkgFile)) fs.writeFileSync(pkgFile, JSON.stringify({ name: 'node-red-demo-userdir', private: true, version: '0.0.0' }, null, 2));
  const packDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', packDir, pkgRoot], { cwd: pkgRoot, encoding: 'utf8' }).trim().split('\n').pop();
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--silent', path.join(packDir, out)], { cwd: dir, stdio: 'inherit' });
  } finally {
    fs.rmSync(packDir, { recursive: true, force: true });
  }
}

/** Write dir/settings.js (and a credential secret kept across runs); returns the settings file's path. */
function writeSettings(dir, { host, port }) {
  const secretFile = path.join(dir, '.credential-secret');
  if (!fs.existsSync(secretFile)) fs.writeFileSync(secretFile, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
  const settings = `// Written by scripts/nodered-userdir.js; rewritten at every start.
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
  const file = path.join(dir, 'settings.js');
  fs.writeFileSync(file, settings);
  return file;
}

/**
 * Write the settings and start Node-RED (node-red/red.js from this package's devDependencies) on
 * host:port with userDir as a child process. Returns the ChildProcess; stdio as for spawn
 * (default: stdout and stderr piped).
 */
function startNodeRed({ userDir, host, port, stdio = ['ignore', 'pipe', 'pipe'] }) {
  const settingsFile = writeSettings(userDir, { host, port });
  return spawn(process.execPath, [require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', settingsFile], { stdio });
}

module.exports = { installInto, writeSettings, startNodeRed };
