// The seal keys this browser trusts, pinned by the user (localStorage, `auditline.pins`). The
// viewer verifies checkpoints only with these: a key the service serves proves nothing by itself,
// since whoever runs or writes the service could serve any key. A pin is kept only if its bytes
// hash to its key id (its fingerprint), the same id `auditline fingerprint <pem>` prints.

const KEY = 'auditline.pins';
const KEY_ID = /^[0-9a-f]{32}$/;

const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');

/// Standard base64 (with padding), strictly: anything another encoder would not write is refused.
export function fromStandardBase64(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  let bytes;
  try {
    bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
  return btoa(String.fromCharCode(...bytes)) === text ? bytes : null;
}

/// The DER SubjectPublicKeyInfo inside a PEM `PUBLIC KEY`, or null.
export function pemDer(pem) {
  if (typeof pem !== 'string') return null;
  const inner = pem.split('-----BEGIN PUBLIC KEY-----')[1];
  if (inner === undefined) return null;
  return fromStandardBase64(inner.split('-----END PUBLIC KEY-----')[0].replace(/\s+/g, ''));
}

/// A key's fingerprint: the first 16 bytes of SHA-256 of its DER SubjectPublicKeyInfo, in hex.
export async function fingerprint(der) {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', der)).slice(0, 16));
}

const wellFormed = (p) => p && typeof p === 'object' && typeof p.key_id === 'string' && KEY_ID.test(p.key_id)
  && typeof p.public_key_pem === 'string' && (p.valid_until === null || typeof p.valid_until === 'string');

/// The pinned keys: `{ key_id, public_key_pem, valid_until }` (valid_until null: not retired).
export function list() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY));
    return Array.isArray(stored) ? stored.filter(wellFormed) : [];
  } catch {
    return [];
  }
}

function save(pins) {
  localStorage.setItem(KEY, JSON.stringify(pins));
}

/// Pins a key; refused (an Error saying why) unless it is a P-256 public key whose bytes hash to
/// `key_id`. A pin of the same id is replaced.
export async function add({ key_id: keyId, public_key_pem: pem, valid_until: validUntil = null }) {
  const der = pemDer(pem);
  if (!der) throw new Error('That is not a PEM public key (-----BEGIN PUBLIC KEY-----).');
  try {
    await crypto.subtle.importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  } catch {
    throw new Error('That is not an ECDSA P-256 public key.');
  }
  const id = await fingerprint(der);
  if (id !== keyId) throw new Error(`Not pinned: the key's bytes hash to ${id}, not to ${keyId}.`);
  if (validUntil !== null && (typeof validUntil !== 'string' || Number.isNaN(Date.parse(validUntil)))) {
    throw new Error('Not pinned: its retirement time is not a date.');
  }
  save([...list().filter((p) => p.key_id !== id), { key_id: id, public_key_pem: pem, valid_until: validUntil }]);
  return id;
}

export function remove(keyId) {
  save(list().filter((p) => p.key_id !== keyId));
}

/// What is wrong with the keys a service serves, against the pins: a key under a pinned key's id
/// whose bytes are not the pinned key's (`another`), or a key whose bytes do not hash to the id it
/// is served under (`misnamed`). Either way the service presents a key under a name not its own.
export async function conflicts(served, pinned = list()) {
  const found = [];
  for (const key of Array.isArray(served) ? served : []) {
    const claimed = key && typeof key.key_id === 'string' ? key.key_id : '';
    const der = pemDer(key && key.public_key_pem);
    const id = der ? await fingerprint(der) : null;
    const pin = pinned.find((p) => p.key_id === claimed);
    const pinDer = pin ? pemDer(pin.public_key_pem) : null;
    if (pin && (!der || !pinDer || hex(der) !== hex(pinDer))) found.push({ key_id: claimed, kind: 'another' });
    else if (id !== claimed) found.push({ key_id: claimed, kind: 'misnamed' });
  }
  return found;
}

/// The pins with their windows narrowed by what the service publishes for the same key (same id,
/// same bytes): a key the service says it retired verifies nothing dated after that, even if it
/// was pinned before the rotation. A served window can only narrow a pin, never widen it or trust
/// a key.
export function narrowed(pinned, served) {
  const same = (a, b) => (a && b ? a.replace(/\s+/g, '') === b.replace(/\s+/g, '') : false);
  return pinned.map((pin) => {
    const match = (Array.isArray(served) ? served : []).find((k) => k && k.key_id === pin.key_id
      && same(k.public_key_pem, pin.public_key_pem) && typeof k.valid_until === 'string' && !Number.isNaN(Date.parse(k.valid_until)));
    if (!match) return pin;
    const until = pin.valid_until === null || Date.parse(match.valid_until) < Date.parse(pin.valid_until)
      ? match.valid_until : pin.valid_until;
    return { ...pin, valid_until: until };
  });
}
