// Checks an entry in the browser, with WebCrypto, as `auditline verify --proof` does: its leaf from
// its fields (auditline-leaf/1), the audit path to its period's root (RFC 6962), and the ECDSA P-256
// signature of the checkpoint with a key the service publishes. A key fetched from the same service
// proves the trail unchanged since sealing, not who runs the service: for that, check with a key
// you hold (`auditline verify`).

const FIELDS = ['id', 'timestamp', 'action', 'entity_type', 'entity_id', 'project_id', 'user_id', 'changes',
  'ip_address', 'metadata', 'tenant_id'];
const encoder = new TextEncoder();

/// RFC 8785: keys in UTF-16 order, ECMAScript number and string forms.
export function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
}

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const sha256 = async (...parts) => new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
const fromHex = (text) => new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
const fromBase64 = (text) => {
  const plain = text.replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(plain + '='.repeat((4 - (plain.length % 4)) % 4)), (c) => c.charCodeAt(0));
};
const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
const leafHash = (bytes) => sha256(new Uint8Array([0]), bytes);
const nodeHash = (left, right) => sha256(new Uint8Array([1]), left, right);

/// The entry's leaf hash from its fields and salts (hex), or a reason it cannot be computed.
export async function computeLeaf(entry) {
  const integrity = entry.integrity || {};
  if (integrity.format !== 'auditline-leaf/1') throw new Error(`unknown leaf format ${integrity.format}`);
  const seed = integrity.seed ? fromBase64(integrity.seed) : null;
  const commitments = { _format: 'auditline-leaf/1' };
  for (const name of FIELDS) {
    if (integrity.erased && integrity.erased[name]) {
      commitments[name] = integrity.erased[name];
      continue;
    }
    let salt;
    if (seed) {
      salt = (await sha256(encoder.encode('auditline-salt/1'), new Uint8Array([0]), seed, new Uint8Array([0]), encoder.encode(name))).slice(0, 16);
    } else if (integrity.salts && integrity.salts[name]) {
      salt = fromBase64(integrity.salts[name]);
    } else {
      throw new Error(`no salt for ${name}`);
    }
    const value = entry[name] === undefined ? null : entry[name];
    commitments[name] = hex(await sha256(salt, encoder.encode(canonical(value))));
  }
  return hex(await leafHash(encoder.encode(canonical(commitments))));
}

/// RFC 6962 §2.1.1 inclusion: the root the path leads to from `leaf` (bytes), or null.
export async function rootFromPath(leaf, index, size, path) {
  let fnode = BigInt(index);
  let snode = BigInt(size) - 1n;
  if (fnode > snode) return null;
  let r = leaf;
  for (const p of path.map(fromHex)) {
    if (snode === 0n) return null;
    if ((fnode & 1n) === 1n || fnode === snode) {
      r = await nodeHash(p, r);
      while ((fnode & 1n) === 0n && fnode !== 0n) { fnode >>= 1n; snode >>= 1n; }
    } else {
      r = await nodeHash(r, p);
    }
    fnode >>= 1n;
    snode >>= 1n;
  }
  return snode === 0n ? r : null;
}

/// The note text a checkpoint's signature covers (auditline-checkpoint/2, a C2SP tlog-checkpoint).
export function noteText(body) {
  return `${body.origin}\n${body.total}\n${toBase64(fromHex(body.root))}\n${body.format}\n`
    + `period ${body.start} ${body.end} ${body.size}\nids ${toBase64(fromHex(body.ids))}\n`
    + `previous ${toBase64(fromHex(body.previous))}\n`;
}

// ⌊n/2⌋ of P-256: a signature with a larger s is the "high" twin of a valid one, refused.
const HALF_ORDER = 0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8n;
const lowS = (raw) => BigInt(`0x${hex(raw.slice(32))}`) <= HALF_ORDER;

/// A DER ECDSA signature as WebCrypto's r‖s (32 bytes each).
function rawSignature(der) {
  const ints = [];
  let at = 2 + (der[1] & 0x80 ? der[1] & 0x7f : 0);
  for (let i = 0; i < 2; i += 1) {
    if (der[at] !== 0x02) throw new Error('not a DER signature');
    const length = der[at + 1];
    let value = der.slice(at + 2, at + 2 + length);
    while (value.length > 32 && value[0] === 0) value = value.slice(1);
    const padded = new Uint8Array(32);
    padded.set(value, 32 - value.length);
    ints.push(padded);
    at += 2 + length;
  }
  return concat(...ints);
}

const keys = new Map();

async function publicKey(api, keyId) {
  if (!keys.has(keyId)) {
    const { keys: published } = await api.get('audit/keys');
    for (const k of published) {
      const der = fromBase64(k.public_key_pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''));
      // The key id is the key's fingerprint: a published key is taken only under its own id.
      if (hex((await sha256(der)).slice(0, 16)) !== k.key_id) continue;
      keys.set(k.key_id, await crypto.subtle.importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']));
    }
  }
  return keys.get(keyId) || null;
}

/// Checks `entry` (as shown) against its proof. Resolves to { state: 'verified' | 'pending' |
/// 'failed', text }.
export async function verifyEntry(api, entry) {
  const proof = await api.get(`audit/logs/${encodeURIComponent(entry.id)}/proof`);
  if (proof.sealed === false) return { state: 'pending', text: `not sealed yet (after ${proof.sealed_after})` };
  const { signature, cosignatures, ...body } = proof.checkpoint;
  const leaf = await computeLeaf(entry);
  if (leaf !== (entry.integrity && entry.integrity.leaf_hash)) {
    return { state: 'failed', text: 'FAILED: the entry does not match its leaf hash (a field was changed)' };
  }
  if (body.tenant !== entry.tenant_id || !(body.start <= entry.timestamp && entry.timestamp < body.end)) {
    return { state: 'failed', text: 'FAILED: the checkpoint does not cover this entry' };
  }
  const root = await rootFromPath(fromHex(leaf), proof.leaf_index, proof.tree_size, proof.proof);
  if (!root || proof.tree_size !== body.size || hex(root) !== body.root) {
    return { state: 'failed', text: 'FAILED: the audit path does not lead to the checkpoint’s root' };
  }
  const key = await publicKey(api, body.key_id);
  if (!key) return { state: 'failed', text: `FAILED: no published key ${body.key_id}` };
  const raw = rawSignature(fromBase64(signature));
  const good = lowS(raw) && await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw, encoder.encode(noteText(body)));
  if (!good) return { state: 'failed', text: 'FAILED: the checkpoint’s signature does not verify' };
  return { state: 'verified', text: `verified: leaf ${proof.leaf_index + 1} of ${proof.tree_size}, checkpoint ending ${body.end}, key ${body.key_id}` };
}
