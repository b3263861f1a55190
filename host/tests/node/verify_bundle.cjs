// Verify an autoheal patch bundle with Node's built-in crypto (the snippet in
// patches/README.md). Usage: node verify_bundle.cjs BUNDLE PUBLIC_KEY_FILE NOW_MS
// Prints "OK <name> <version>" (exit 0) or "REFUSED" (exit 1).
const fs = require('node:fs');
const crypto = require('node:crypto');
const [bundleFile, keyFile, nowMs] = process.argv.slice(2);

const b = JSON.parse(fs.readFileSync(bundleFile));
const raw = Buffer.from(fs.readFileSync(keyFile, 'utf8').trim(), 'base64'); // 32 bytes
const key = crypto.createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]), format: 'der', type: 'spki' });
const keyId = crypto.createHash('sha256').update(raw).digest('hex').slice(0, 16);
const m = Buffer.from(b.manifest, 'base64');
const sig = b.signatures.find((s) => s.key_id === keyId);
const ok = sig && crypto.verify(null, m, key, Buffer.from(sig.signature, 'base64'));
const manifest = ok ? JSON.parse(m) : null;                        // only if ok
const wasm = Buffer.from(b.module, 'base64');
const good = ok && wasm.length === manifest.module_size_bytes
  && crypto.createHash('sha256').update(wasm).digest('hex') === manifest.module_sha256
  && Number(nowMs) < Date.parse(manifest.expires_at);
console.log(good ? `OK ${manifest.name} ${manifest.version}` : 'REFUSED');
process.exit(good ? 0 : 1);
