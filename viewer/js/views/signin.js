// Sign in with a JWT or an API key. The credential is checked with one cheap call before it is
// kept; a refusal is shown as the API worded it.

import { el, clear } from '../dom.js';
import { ApiError } from '../api.js';

export function renderSignIn(main, { config, check, onSignedIn, message }) {
  const kind = el('select', { id: 'credential-kind', name: 'kind' },
    el('option', { value: 'token' }, 'JWT (bearer token)'),
    el('option', { value: 'api_key' }, 'API key'));
  const secret = el('input', {
    id: 'credential', name: 'credential', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
  });
  const error = el('p', { class: 'error', id: 'signin-error', role: 'alert' }, message || '');
  const submit = el('button', { type: 'submit' }, 'Sign in');

  async function signIn(credential) {
    submit.disabled = true;
    error.textContent = '';
    try {
      await check(credential);
      onSignedIn(credential);
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : 'Signing in failed.';
    } finally {
      submit.disabled = false;
    }
  }

  const form = el('form', {
    class: 'signin',
    'aria-labelledby': 'signin-title',
    onsubmit: (event) => {
      event.preventDefault();
      signIn({ kind: kind.value, value: secret.value.trim() });
    },
  },
  el('h2', { id: 'signin-title' }, 'Sign in'),
  el('p', {}, 'Your credential stays in this tab and is sent only to this service.'),
  el('label', { for: 'credential-kind' }, 'Credential'), kind,
  el('label', { for: 'credential' }, 'Token or key'), secret,
  submit,
  config.development_api_key
    ? el('button', {
      type: 'button', id: 'dev-sign-in', class: 'secondary',
      onclick: () => signIn({ kind: 'api_key', value: config.development_api_key }),
    }, 'Use the local gateway’s development key')
    : null,
  error);
  clear(main).append(form);
  secret.focus();
}
