// Checks an entry in the browser, with WebCrypto, by the rules of the Rust verifier
// (`Verifier::verify_proof`, `judge_unsealed`; both run the shared vectors in
// tests/fixtures/verify-vectors.json): its leaf from the fields shown (auditline-leaf/1), the audit
// path to its period's root (RFC 6962), and the checkpoint's ECDSA P-256 signature over its note
// text (auditline-checkpoint/2) with a key the user PINNED (pins.js) — never with a key because the
// service serves it: whoever writes the service's tables, or runs it, could serve any key.

import { fingerprint, fromStandardBase64, pemDer, list as pinnedKeys, narrowed } from './pins.js';

const FIELDS = ['id', 'timestamp', 'action', 'entity_type', 'entity_id', 'project_id', 'user_id', 'changes',
  'ip_address', 'metadata', 'tenant_id'];
const encoder = new TextEncoder();
const HASH = /^[0-9a-f]{64}$/;

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
    if (integrity.erased && Object.hasOwn(integrity.erased, name)) {
      // Erased: the value and its salt are gone, the commitment kept. A value shown anyway is a
      // value nothing commits to.
      if (entry[name] !== null && entry[name] !== undefined) throw new Error(`field ${name} is marked erased but has a value`);
      if (typeof integrity.erased[name] !== 'string' || !HASH.test(integrity.erased[name])) throw new Error(`field ${name}: its kept commitment is not a hash`);
      commitments[name] = integrity.erased[name];
      continue;
    }
    let salt;
    if (seed) {
      salt = (await sha256(encoder.encode('auditline-salt/1'), new Uint8Array([0]), seed, new Uint8Array([0]), encoder.encode(name))).slice(0, 16);
    } else if (integrity.salts && Object.hasOwn(integrity.salts, name)) {
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


/// The checkpoint format this viewer verifies.
export const CHECKPOINT_FORMAT = 'auditline-checkpoint/2';
/// The longest a working seal takes to cover an entry (`LATEST_SEAL` in seal/verify.rs): the
/// longest period, an hour, then the most grace and schedule a verifier believes, an hour each.
export const LATEST_SEAL_MS = (3600 + 2 * 3600) * 1000;

// P-256's group order n, and ⌊n/2⌋: a signature with a larger s is the "high" twin of a valid one.
const ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_ORDER = 0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8n;

/// A strict DER `SEQUENCE { INTEGER r, INTEGER s }` (short lengths, minimal integers, both in
/// 1..n, nothing after) as WebCrypto's r‖s, or null — as `parse_der` in integrity/signing.rs.
function strictDer(der) {
  if (der.length < 2 || der[0] !== 0x30 || der[1] >= 0x80 || der[1] !== der.length - 2) return null;
  const ints = [];
  let at = 2;
  for (let i = 0; i < 2; i += 1) {
    if (at + 2 > der.length || der[at] !== 0x02) return null;
    const length = der[at + 1];
    if (length === 0 || length > 33 || at + 2 + length > der.length) return null;
    const value = der.slice(at + 2, at + 2 + length);
    if ((value[0] & 0x80) !== 0 || (value.length > 1 && value[0] === 0 && (value[1] & 0x80) === 0)) return null;
    const digits = value[0] === 0 ? value.slice(1) : value;
    if (digits.length > 32) return null;
    const n = digits.length ? BigInt(`0x${hex(digits)}`) : 0n;
    if (n === 0n || n >= ORDER) return null;
    const padded = new Uint8Array(32);
    padded.set(digits, 32 - digits.length);
    ints.push({ bytes: padded, n });
    at += 2 + length;
  }
  if (at !== der.length) return null;
  return { raw: concat(ints[0].bytes, ints[1].bytes), s: ints[1].n };
}

/// Whether an origin names the tenant (`…/<tenant>`) and is a valid note key name (no spaces,
/// no `+`, no control characters), as `origin_names_tenant` in integrity/checkpoint.rs.
function originNamesTenant(origin, tenant) {
  if (typeof origin !== 'string' || !origin || /[\p{White_Space}\p{Cc}+]/u.test(origin)) return false;
  if (!origin.endsWith(tenant)) return false;
  const prefix = origin.slice(0, origin.length - tenant.length);
  return prefix.length > 1 && prefix.endsWith('/');
}

const isCount = (n) => Number.isSafeInteger(n) && n >= 0;
const millis = (now) => (now instanceof Date ? now.getTime() : typeof now === 'number' ? now : typeof now === 'string' ? Date.parse(now) : Date.now());
const iso = (ms) => new Date(ms).toISOString();
const failed = (why) => ({ state: 'failed', text: `FAILED: ${why}` });
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/// An answer of "not sealed": pending until the entry's own time plus the latest a working seal
/// takes (or the service's overdue_after, if earlier); after that, a checkpoint was removed.
function unsealed(answer, entry, now) {
  const id = entry && typeof entry.id === 'string' ? entry.id : '';
  if (typeof answer.id === 'string' && answer.id.toLowerCase() !== id.toLowerCase()) {
    return failed('the proof route answered about another entry');
  }
  if (!UUID_V7.test(id)) return failed('the entry’s id is not a UUIDv7, so when it should be sealed is unknown');
  const stamped = parseInt(id.replace(/-/g, '').slice(0, 12), 16);
  const claimed = typeof answer.overdue_after === 'string' ? Date.parse(answer.overdue_after) : NaN;
  const due = Number.isNaN(claimed) ? stamped + LATEST_SEAL_MS : Math.min(claimed, stamped + LATEST_SEAL_MS);
  if (!(now <= due)) return failed(`should have been sealed by ${iso(due)}: a checkpoint was removed`);
  return { state: 'pending', text: `not sealed yet (due by ${iso(due)})` };
}

/// The answer's checkpoint body and signature if the answer has a proof's shape, else null.
function proofShape(answer) {
  const c = answer.checkpoint;
  if (!c || typeof c !== 'object' || !isCount(answer.leaf_index) || !isCount(answer.tree_size)) return null;
  if (!Array.isArray(answer.proof) || !answer.proof.every((h) => typeof h === 'string' && HASH.test(h))) return null;
  const strings = ['format', 'origin', 'tenant', 'start', 'end', 'key_id', 'signature'];
  if (!strings.every((k) => typeof c[k] === 'string') || !isCount(c.size) || !isCount(c.total)) return null;
  if (![c.root, c.ids, c.previous].every((h) => typeof h === 'string' && HASH.test(h))) return null;
  const { signature, cosignatures, ...body } = c;
  return { body, signature };
}

/// The pinned key the checkpoint names: one whose bytes hash to its pinned id and to the
/// checkpoint's key_id (a pin whose bytes do not hash to its id is ignored). With several, the
/// earliest retirement counts.
async function pinnedKey(pinned, keyId) {
  let found = null;
  for (const pin of Array.isArray(pinned) ? pinned : []) {
    const der = pin && pemDer(pin.public_key_pem);
    if (!der || pin.key_id !== keyId || (await fingerprint(der)) !== keyId) continue;
    const until = pin.valid_until === null || pin.valid_until === undefined ? null : pin.valid_until;
    if (!found || (until !== null && (found.until === null || Date.parse(until) < Date.parse(found.until)))) found = { der, until };
  }
  return found;
}

/// Judges a proof route's `answer` for the `entry` the page shows, with the keys the user pinned,
/// for the caller's `tenant`, at `now` — pure (no fetch): the rules of the Rust verifier, case for
/// case (tests/fixtures/verify-vectors.json). Resolves to { state, text }: state `verified`,
/// `failed`, `pending` (not sealed, and not overdue) or `unpinned` (signed by a key nobody pinned).
export async function verifyProof(answer, entry, { pinned = [], tenant, now } = {}) {
  try {
    if (!answer || typeof answer !== 'object') return failed('the proof route’s answer is not a proof');
    if (answer.sealed === false) return unsealed(answer, entry, millis(now));
    if (!entry || typeof entry !== 'object' || typeof entry.id !== 'string' || typeof entry.timestamp !== 'string'
      || typeof entry.tenant_id !== 'string' || !entry.integrity || typeof entry.integrity !== 'object') {
      return failed('the entry shown is not an entry');
    }
    const shape = proofShape(answer);
    if (!shape) return failed('the proof route’s answer is not a proof');
    const { body, signature } = shape;

    const key = await pinnedKey(pinned, body.key_id);
    if (!key) return { state: 'unpinned', text: 'unverified: key not pinned', key_id: body.key_id };
    if (key.until !== null) {
      const end = Date.parse(body.end);
      const until = Date.parse(key.until);
      if (Number.isNaN(end) || Number.isNaN(until) || end > until) {
        return failed(`the checkpoint ending ${body.end} was signed by key ${body.key_id}, which was retired at ${key.until}`);
      }
    }
    if (typeof tenant !== 'string' || !tenant) return failed('the tenant you are signed in as is unknown');
    if (body.tenant !== tenant || entry.tenant_id !== tenant) {
      return failed(`the proof is tenant ${body.tenant}’s (entry of ${entry.tenant_id}), not tenant ${tenant}’s`);
    }
    if (body.format !== CHECKPOINT_FORMAT) return failed(`the checkpoint is not an ${CHECKPOINT_FORMAT}`);
    if (!originNamesTenant(body.origin, body.tenant)) return failed('the checkpoint’s origin does not name its tenant');

    const der = fromStandardBase64(signature);
    const parsed = der && strictDer(der);
    if (!parsed) return failed('the checkpoint’s signature is not a strict DER ECDSA signature');
    // The high-s twin of a valid signature verifies with plain ECDSA: refused, as in Rust.
    if (parsed.s > HALF_ORDER) return failed('the checkpoint’s signature is not low-s');
    const publicKey = await crypto.subtle.importKey('spki', key.der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    if (!await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, publicKey, parsed.raw, encoder.encode(noteText(body)))) {
      return failed('the checkpoint’s signature does not verify with the pinned key');
    }

    const stamped = Date.parse(entry.timestamp);
    const shown = Number.isNaN(stamped) ? '' : iso(stamped);
    // The service stamps both at once: a timestamp moved away from its id's time is refused.
    if (!UUID_V7.test(entry.id) || parseInt(entry.id.replace(/-/g, '').slice(0, 12), 16) !== stamped) {
      return failed('the entry’s timestamp is not its id’s time (one was moved)');
    }
    if (!(body.start <= shown && shown < body.end)) return failed('the entry was stamped outside the checkpoint’s period');

    let leaf;
    try {
      leaf = await computeLeaf(entry);
    } catch (e) {
      return failed(`the entry does not match its leaf hash: ${e.message}`);
    }
    if (leaf !== entry.integrity.leaf_hash) return failed('the entry does not match its leaf hash (a field was changed)');

    const root = await rootFromPath(fromHex(leaf), answer.leaf_index, answer.tree_size, answer.proof);
    if (!root || answer.tree_size !== body.size || hex(root) !== body.root) {
      return failed('the audit path does not lead to the checkpoint’s root');
    }
    const erased = Object.keys(entry.integrity.erased || {});
    return {
      state: 'verified',
      text: `verified: leaf ${answer.leaf_index + 1} of ${answer.tree_size}, checkpoint ending ${body.end}, key ${body.key_id}`
        + (erased.length ? ` (erased: ${erased.join(', ')})` : ''),
    };
  } catch (e) {
    return failed(e && e.message ? e.message : 'the proof could not be checked');
  }
}

/// The page's entry point: fetches the entry's proof and the caller's tenant (once a session, see
/// api.js) and judges them with the keys pinned in this browser.
export async function verifyEntry(api, entry) {
  const [answer, tenant, served] = await Promise.all([
    api.get(`audit/logs/${encodeURIComponent(entry.id)}/proof`), api.tenant(), api.servedKeys(),
  ]);
  return verifyProof(answer, entry, { pinned: narrowed(pinnedKeys(), served), tenant, now: Date.now() });
}
