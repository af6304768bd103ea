// The seal keys: those the service serves (GET /audit/keys), each with its fingerprint and how to
// check it, and those pinned in this browser — the only keys entries are verified with here.

import { el, clear } from '../dom.js';
import * as pins from '../pins.js';

// How to check a fingerprint, under every served key.
const how = () => el('p', { class: 'how muted' }, 'Compare with the fingerprint your operator publishes, or run ',
  el('code', {}, 'auditline fingerprint <public key.pem>'), ' on the key you were given.');

const when = (iso) => (typeof iso === 'string' ? iso : null);

function servedStatus(conflict, pinned) {
  if (conflict && conflict.kind === 'another') {
    return el('strong', { class: 'key-bad' }, 'ANOTHER KEY under the id of a key you pinned: its bytes are not the pinned key’s. Do not trust it.');
  }
  if (conflict) return el('strong', { class: 'key-bad' }, 'Its bytes do not hash to this id: it cannot be pinned.');
  if (pinned) return el('span', { class: 'key-good' }, 'Pinned in this browser.');
  return el('span', {}, 'Not pinned: entries it signs show “unverified”.');
}

/// Renders the view; `loadKeys` resolves to { keys, conflicts } (and refreshes the page-wide
/// warning, so rendering again after a pin changes brings the warning up to date too).
export async function renderKeys(main, { loadKeys }) {
  const status = el('p', { role: 'status', class: 'keys-status' }, 'Loading the service’s keys…');
  const section = el('section', { class: 'keys-view', 'aria-labelledby': 'keys-title' },
    el('h2', { id: 'keys-title' }, 'Signing keys'),
    el('p', {}, 'Entries are verified in this browser only with keys you pinned here. A key is not trustworthy because this service serves it: whoever runs the service or can write its tables could serve any key. Pin a key only after checking its fingerprint.'),
    status);
  clear(main).append(section);

  const rerender = () => renderKeys(main, { loadKeys });
  const act = async (button, action) => {
    button.disabled = true;
    try {
      await action();
      rerender();
    } catch (e) {
      status.textContent = e.message;
      button.disabled = false;
    }
  };

  let served = [];
  let conflicts = [];
  try {
    ({ keys: served, conflicts } = await loadKeys());
    status.textContent = `${served.length} key${served.length === 1 ? '' : 's'} served by this service.`;
  } catch (e) {
    status.textContent = `The service’s keys could not be read: ${e.message}`;
  }
  const pinned = pins.list();
  const pinnedIds = new Set(pinned.map((p) => p.key_id));

  const servedList = el('ul', { class: 'key-list served-keys' }, served.map((key) => {
    const conflict = conflicts.find((c) => c.key_id === key.key_id);
    const isPinned = pinnedIds.has(key.key_id) && !conflict;
    const span = [when(key.valid_from) && `from ${key.valid_from}`, when(key.valid_until) && `retired at ${key.valid_until}`].filter(Boolean).join(', ');
    let button = null;
    if (isPinned) {
      button = el('button', { type: 'button', dataset: { action: 'unpin', keyId: key.key_id }, onclick: (e) => act(e.target, () => pins.remove(key.key_id)) }, 'Unpin');
    } else if (!conflict) {
      button = el('button', {
        type: 'button',
        dataset: { action: 'pin', keyId: key.key_id },
        onclick: (e) => act(e.target, () => pins.add({ key_id: key.key_id, public_key_pem: key.public_key_pem, valid_until: when(key.valid_until) })),
      }, 'Pin');
    }
    return el('li', { class: `key${conflict ? ' key-conflict' : ''}`, dataset: { keyId: String(key.key_id) } },
      el('div', {}, 'Fingerprint ', el('code', { class: 'fingerprint' }, String(key.key_id))),
      el('div', { class: 'key-status' }, servedStatus(conflict, isPinned)),
      span ? el('div', { class: 'muted' }, `Signs checkpoints ${span}.`) : null,
      how(),
      el('details', {}, el('summary', {}, 'Public key (PEM)'), el('pre', { class: 'json' }, String(key.public_key_pem))),
      button);
  }));

  const servedIds = new Set(served.map((k) => k.key_id));
  const impostors = new Set(conflicts.filter((c) => c.kind === 'another').map((c) => c.key_id));
  const servedNote = (id) => {
    if (impostors.has(id)) return el('strong', { class: 'key-bad' }, 'The service serves ANOTHER key under this id.');
    return servedIds.has(id) ? 'Served by this service.' : 'Not served by this service now.';
  };
  const pinnedList = pinned.length
    ? el('ul', { class: 'key-list pinned-keys' }, pinned.map((pin) => el('li', { class: 'key', dataset: { keyId: pin.key_id } },
      el('div', {}, 'Fingerprint ', el('code', { class: 'fingerprint' }, pin.key_id)),
      el('div', { class: 'muted' }, [
        pin.valid_until ? `Retired at ${pin.valid_until}: verifies checkpoints ending no later. ` : '',
        servedNote(pin.key_id),
      ]),
      el('button', { type: 'button', dataset: { action: 'unpin', keyId: pin.key_id }, onclick: (e) => act(e.target, () => pins.remove(pin.key_id)) }, 'Unpin'))))
    : el('p', { class: 'muted pinned-keys' }, 'No key pinned: entries show “unverified: key not pinned”.');

  const pem = el('textarea', { id: 'pin-pem', rows: 5, spellcheck: 'false', placeholder: '-----BEGIN PUBLIC KEY-----' });
  const pasteStatus = el('p', { role: 'status', id: 'pin-pem-status' });
  const form = el('form', {
    class: 'pin-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const der = pins.pemDer(pem.value);
      if (!der) { pasteStatus.textContent = 'That is not a PEM public key (-----BEGIN PUBLIC KEY-----).'; return; }
      try {
        const id = await pins.add({ key_id: await pins.fingerprint(der), public_key_pem: pem.value.trim(), valid_until: null });
        pasteStatus.textContent = `Pinned key ${id}.`;
        rerender();
      } catch (e) {
        pasteStatus.textContent = e.message;
      }
    },
  },
  el('label', { for: 'pin-pem' }, 'A seal public key you were given (PEM), to pin directly'),
  pem,
  el('button', { type: 'submit' }, 'Pin this key'),
  pasteStatus);

  section.append(
    el('h3', {}, 'Served by this service'),
    served.length ? servedList : el('p', { class: 'muted' }, 'None.'),
    el('h3', {}, 'Pinned in this browser'),
    pinnedList,
    el('h3', {}, 'Pin a key you were given'),
    form);
}
