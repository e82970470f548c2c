/**
 * SNMPv3 DES privacy on Node.js 17+: OpenSSL 3 moved single DES (`des-cbc`) to its legacy provider,
 * so net-snmp's DES fails with ERR_OSSL_EVP_UNSUPPORTED unless Node runs with
 * `--openssl-legacy-provider`. Triple DES in EDE mode with three equal keys is single DES
 * (E_k(D_k(E_k(x))) = E_k(x)), and `des-ede3-cbc` is in OpenSSL's default provider. When `des-cbc`
 * is unavailable, net-snmp's DES entry is given encrypt/decrypt functions that do exactly what its
 * own do (RFC 3414 §8.1: key and pre-IV from the localized privacy key, salt = engine boots | random,
 * zero padding to the block size), with `des-ede3-cbc` and the key repeated three times.
 */
import * as crypto from 'node:crypto';

interface Engine {
  engineID: Buffer;
}

let installed = false;

export function desCbcAvailable(): boolean {
  try {
    crypto.createCipheriv('des-cbc', Buffer.alloc(8), Buffer.alloc(8));
    return true;
  } catch {
    return false;
  }
}

/** Make net-snmp's DES work without the legacy provider. Idempotent; a no-op where des-cbc works. */
export function installDesFallback(snmp: any): void {
  if (installed || desCbcAvailable()) {
    installed = true;
    return;
  }
  const E = snmp.Encryption;
  const A = snmp.Authentication;
  const des = E?.algorithms?.[snmp.PrivProtocols.des];
  if (!des || !A?.passwordToKey) return; // a net-snmp without these internals keeps its own behaviour
  const keys = (authProtocol: number, privPassword: string, engineID: Buffer) => {
    const localized: Buffer = A.passwordToKey(authProtocol, privPassword, engineID);
    const key = localized.subarray(0, 8);
    return { key3: Buffer.concat([key, key, key]), preIv: localized.subarray(8, 16) };
  };
  des.encryptPdu = (scopedPdu: Buffer, _privProtocol: number, privPassword: string, authProtocol: number, engine: Engine) => {
    const { key3, preIv } = keys(authProtocol, privPassword, engine.engineID);
    const salt = Buffer.alloc(8);
    salt.writeUInt32BE(1, 0); // engine boots part: no persistent engine state here (as net-snmp)
    crypto.randomBytes(4).copy(salt, 4);
    const iv = Buffer.alloc(8);
    for (let i = 0; i < 8; i++) iv[i] = preIv[i] ^ salt[i];
    const padded = Buffer.alloc(Math.ceil(scopedPdu.length / 8) * 8);
    scopedPdu.copy(padded);
    const cipher = crypto.createCipheriv('des-ede3-cbc', key3, iv);
    cipher.setAutoPadding(false);
    return { encryptedPdu: Buffer.concat([cipher.update(padded), cipher.final()]), msgPrivacyParameters: salt };
  };
  des.decryptPdu = (encryptedPdu: Buffer, _privProtocol: number, privParameters: Buffer, privPassword: string, authProtocol: number, engine: Engine) => {
    const { key3, preIv } = keys(authProtocol, privPassword, engine.engineID);
    const iv = Buffer.alloc(8);
    for (let i = 0; i < 8; i++) iv[i] = preIv[i] ^ privParameters[i];
    const decipher = crypto.createDecipheriv('des-ede3-cbc', key3, iv);
    decipher.setAutoPadding(false);
    return Buffer.concat([decipher.update(encryptedPdu), decipher.final()]);
  };
  installed = true;
}
