/**
 * STARTTLS against a real upsd 2.8.0 (Debian, NSS build) with a self-signed certificate: NutSource
 * and NutConnection with a pinned fingerprint, with chain verification, and against a upsd without TLS.
 *
 * What upsd 2.8.0 does on the wire (asserted below): it answers plaintext commands before STARTTLS
 * even when TLS is configured; STARTTLS -> `OK STARTTLS` then the TLS handshake (TLS 1.3 here);
 * STARTTLS on a TLS connection -> `ERR ALREADY-SSL-MODE`; STARTTLS without CERTPATH/CERTIDENT ->
 * `ERR FEATURE-NOT-CONFIGURED`, and the connection stays usable in plaintext.
 */
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { NutPeer, session } from './peers/nut';
import { NutConnection } from '../lib/nut/connection';
import { NutError } from '../lib/nut/protocol';
import { NutSource, NutSourceOptions } from '../lib/nut/source';
import { SourceError } from '../lib/ups/source';
import { TlsSettings } from '../lib/net/tls';

const TIMEOUT_MS = 3000;
const timing = (what: string, ms: number): void => console.log(`      [nut-tls timing] ${what}: ${ms} ms`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** Occurrences of `text` in upsd's log (upsd writes it unbuffered before answering the next command). */
function upsdLogCount(peer: NutPeer, text: string): number {
  return fs.readFileSync(path.join(peer.dir, 'upsd.log'), 'utf8').split(text).length - 1;
}

/** A fingerprint of the same form that differs from `fp` (first hex digit changed). */
function otherFingerprint(fp: string): string {
  return (fp[0] === 'A' ? 'B' : 'A') + fp.slice(1);
}

const plainHex = (fp: string): string => fp.replace(/:/g, '').toUpperCase();

describe('NUT STARTTLS against a real upsd (NSS build, self-signed certificate)', function () {
  this.timeout(60000);
  let tlsPeer: NutPeer;
  let plainPeer: NutPeer;
  const sources: NutSource[] = [];
  const conns: NutConnection[] = [];

  before(async function () {
    this.timeout(60000);
    const t0 = Date.now();
    const [a, b] = await Promise.allSettled([NutPeer.start({ tls: true }), NutPeer.start()]);
    if (a.status === 'fulfilled') tlsPeer = a.value;
    if (b.status === 'fulfilled') plainPeer = b.value;
    if (a.status === 'rejected' || b.status === 'rejected') {
      await Promise.all([tlsPeer?.stop(), plainPeer?.stop()]);
      throw a.status === 'rejected' ? a.reason : (b as PromiseRejectedResult).reason;
    }
    timing('start TLS peer + plain peer (parallel)', Date.now() - t0);
  });
  after(async () => {
    await Promise.all([tlsPeer?.stop(), plainPeer?.stop()]);
  });
  afterEach(async () => {
    await Promise.all([...sources.splice(0).map((s) => s.close()), ...conns.splice(0).map((c) => c.close())]);
  });

  function source(peer: NutPeer, tls: TlsSettings | undefined, over: Partial<NutSourceOptions> = {}): NutSource {
    const s = new NutSource({
      host: peer.host, port: peer.port, ups: 'sim', starttls: true, tls, timeoutMs: TIMEOUT_MS, backoffMinMs: 10, backoffMaxMs: 10, ...over,
    });
    sources.push(s);
    return s;
  }

  async function connect(peer: NutPeer, tls: TlsSettings): Promise<NutConnection> {
    const c = await NutConnection.connect({ host: peer.host, port: peer.port, starttls: true, tls, timeoutMs: TIMEOUT_MS });
    conns.push(c);
    return c;
  }

  /** read() must reject with a SourceError, quickly (not through a timeout); resolves with it. */
  async function readError(s: NutSource): Promise<SourceError> {
    const t0 = Date.now();
    let err: unknown;
    try {
      const r = await s.read(Date.now());
      assert.fail(`read() should have failed, got ups.status ${r.vars['ups.status']}`);
    } catch (e) {
      err = e;
    }
    const ms = Date.now() - t0;
    assert.ok(err instanceof SourceError, `expected a SourceError, got ${String(err)}`);
    assert.ok(ms < TIMEOUT_MS, `failed only after ${ms} ms (a timeout, not a clear refusal): ${err.message}`);
    assert.equal(err.comm, 'lost');
    return err;
  }

  it("the TLS peer exposes its certificate (PEM, SHA-256 fingerprint in Node's form)", () => {
    assert.match(tlsPeer.certPem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/);
    assert.match(tlsPeer.certFingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const der = new crypto.X509Certificate(tlsPeer.certPem).raw;
    const sha = crypto.createHash('sha256').update(der).digest('hex').toUpperCase();
    assert.equal(tlsPeer.certFingerprint256, sha.match(/../g)!.join(':'));
    assert.throws(() => plainPeer.certPem, /only for a peer started with \{ tls: true \}/);
  });

  it('upsd answers plaintext before STARTTLS, and only offers TLS when configured', async () => {
    // TLS is opt-in per connection in upsd 2.8.0: nothing forces a client to use it.
    assert.deepEqual(await session(tlsPeer, ['GET VAR sim ups.status', 'STARTTLS']), ['VAR sim ups.status "OL"', 'OK STARTTLS']);
    // Without CERTPATH/CERTIDENT: an ERR, and the plaintext connection goes on.
    assert.deepEqual(await session(plainPeer, ['STARTTLS', 'GET VAR sim ups.status']), ['ERR FEATURE-NOT-CONFIGURED', 'VAR sim ups.status "OL"']);
  });

  it('STARTTLS with the pinned fingerprint reads the UPS over TLS', async () => {
    const handshakes = upsdLogCount(tlsPeer, 'SSL handshake done successfully');
    const t0 = Date.now();
    const s = source(tlsPeer, { fingerprint: tlsPeer.certFingerprint256 });
    const { vars } = await s.read(Date.now());
    timing('connect + STARTTLS (pinned) + LIST VAR', Date.now() - t0);
    assert.equal(vars['ups.status'], 'OL');
    assert.equal(vars['battery.charge'], '100');
    // upsd itself saw one more completed TLS handshake.
    assert.equal(upsdLogCount(tlsPeer, 'SSL handshake done successfully'), handshakes + 1);
    // The same pin without colons and in lower case is the same pin.
    const s2 = source(tlsPeer, { fingerprint: plainHex(tlsPeer.certFingerprint256).toLowerCase() });
    assert.equal((await s2.read(Date.now())).vars['ups.status'], 'OL');
  });

  it('a wrong pinned fingerprint fails and names the fingerprint the server presented', async () => {
    const wrong = otherFingerprint(tlsPeer.certFingerprint256);
    const t0 = Date.now();
    const err = await readError(source(tlsPeer, { fingerprint: wrong }));
    timing('STARTTLS with a wrong pin -> error', Date.now() - t0);
    assert.match(err.message, /fingerprint mismatch/);
    // Only a real handshake with upsd can have produced this certificate's fingerprint.
    assert.ok(err.message.includes(plainHex(tlsPeer.certFingerprint256)), err.message);
    assert.ok(err.message.includes(plainHex(wrong)), err.message);
    // upsd is not left stuck in its (blocking) handshake: it still answers others at once.
    assert.equal(await tlsPeer.get('sim', 'ups.status'), 'OL');
  });

  it('verification on, no pin, self-signed certificate: a clear error, no hang', async () => {
    const t0 = Date.now();
    const err = await readError(source(tlsPeer, {}));
    timing('STARTTLS with verification against a self-signed cert -> error', Date.now() - t0);
    assert.match(err.message, /self[- ]signed|unable to verify/i);
    assert.match(err.message, /TLS/);
    assert.equal(await tlsPeer.get('sim', 'ups.status'), 'OL');
  });

  it('verification on with the certificate as trusted CA and servername localhost works', async () => {
    const t0 = Date.now();
    const s = source(tlsPeer, { ca: tlsPeer.certPem, servername: 'localhost' });
    assert.equal((await s.read(Date.now())).vars['ups.status'], 'OL');
    timing('connect + STARTTLS (CA verified) + LIST VAR', Date.now() - t0);
    // Without servername the name checked is the host, 127.0.0.1: the certificate's IP SAN covers it.
    assert.equal((await source(tlsPeer, { ca: tlsPeer.certPem }).read(Date.now())).vars['ups.status'], 'OL');
    // The name is really checked.
    const err = await readError(source(tlsPeer, { ca: tlsPeer.certPem, servername: 'ups.example.net' }));
    assert.match(err.message, /does not match|altnames/i);
  });

  it("STARTTLS against a upsd without TLS fails with upsd's ERR FEATURE-NOT-CONFIGURED", async () => {
    const t0 = Date.now();
    const err = await readError(source(plainPeer, { fingerprint: tlsPeer.certFingerprint256 }));
    timing('STARTTLS against upsd without TLS -> error', Date.now() - t0);
    assert.match(err.message, /\(ERR FEATURE-NOT-CONFIGURED\)$/);
    assert.match(err.message, /not configured/);
    // Same through NutConnection: the NutError carries upsd's code.
    await assert.rejects(
      NutConnection.connect({ host: plainPeer.host, port: plainPeer.port, starttls: true, timeoutMs: TIMEOUT_MS }),
      (e: unknown) => e instanceof NutError && e.code === 'FEATURE-NOT-CONFIGURED' && /^STARTTLS: /.test(e.message),
    );
  });

  it('a second STARTTLS on a TLS connection gets ERR ALREADY-SSL-MODE and the connection goes on', async () => {
    const c = await connect(tlsPeer, { fingerprint: tlsPeer.certFingerprint256 });
    await assert.rejects(c.command('STARTTLS'), (e: unknown) => e instanceof NutError && e.code === 'ALREADY-SSL-MODE');
    assert.equal(await c.getVar('sim', 'ups.status'), 'OL');
  });

  it('USERNAME/PASSWORD/LOGIN over TLS: NUMLOGINS 1 while connected, 0 after close()', async () => {
    const numLogins = async (): Promise<number> => {
      const c = await NutConnection.connect({
        host: tlsPeer.host, port: tlsPeer.port, starttls: true, tls: { fingerprint: tlsPeer.certFingerprint256 }, timeoutMs: TIMEOUT_MS,
      });
      try {
        return await c.getNumLogins('sim');
      } finally {
        await c.close();
      }
    };
    assert.equal(await numLogins(), 0);
    const logins = upsdLogCount(tlsPeer, 'logged into UPS [sim] (SSL)');
    const t0 = Date.now();
    const s = source(tlsPeer, { fingerprint: tlsPeer.certFingerprint256 }, { ...tlsPeer.users.monitor });
    assert.equal((await s.read(Date.now())).vars['ups.status'], 'OL');
    timing('connect + STARTTLS + USERNAME/PASSWORD/LOGIN + LIST VAR', Date.now() - t0);
    assert.equal(s.warning, null);
    // upsd logged the LOGIN as made over SSL.
    assert.equal(upsdLogCount(tlsPeer, 'logged into UPS [sim] (SSL)'), logins + 1);
    assert.equal(await numLogins(), 1);
    // Reading again uses the same (logged-in) connection.
    assert.equal((await s.read(Date.now())).vars['ups.status'], 'OL');
    assert.equal(await numLogins(), 1);
    const t1 = Date.now();
    await s.close();
    // close() sends LOGOUT and waits for upsd's answer, so the count drops at once; allow 2 s anyway.
    let n = -1;
    for (const until = Date.now() + 2000; ; ) {
      n = await numLogins();
      if (n === 0 || Date.now() > until) break;
      await sleep(50);
    }
    assert.equal(n, 0);
    timing('close() (LOGOUT over TLS) until NUMLOGINS 0', Date.now() - t1);
    assert.ok(upsdLogCount(tlsPeer, 'logged out from UPS [sim] (SSL)') >= 1);
  });
});
