//! C2SP signed notes (<https://c2sp.org/signed-note>): a text, a blank line, then signature lines
//! `— <key name> base64(4-byte key id ‖ signature)`. Checkpoints are published as notes signed by
//! the seal key (ECDSA P-256, type 0x02), and witnesses add Ed25519 cosignatures (type 0x04,
//! <https://c2sp.org/tlog-cosignature>) over the same text.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use super::Hash;

/// The signature-type byte of timestamped Ed25519 cosignatures.
pub const COSIGNATURE_TYPE: u8 = 0x04;
/// A note larger than this is refused before it is parsed.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Signature lines a note may carry (the spec asks verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 64;
const DASH: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("the note is larger than {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    #[error("the note holds a control character other than newline")]
    ControlCharacter,
    #[error("the note has no blank line before its signatures")]
    NoSignatures,
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("not a signature line: {0}")]
    BadSignatureLine(&'static str),
    #[error("not a key name (empty, or with a space or '+')")]
    BadKeyName,
    #[error("not a verifier key: {0}")]
    BadVerifierKey(&'static str),
    #[error("the cosigning key could not be used: {0}")]
    Key(String),
}

/// Key names are non-empty and hold neither Unicode spaces nor `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

impl SignatureLine {
    /// `— <name> <base64>` (without the newline).
    pub fn render(&self) -> String {
        let mut bytes = self.key_id.to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{DASH}{} {}", self.name, STANDARD.encode(bytes))
    }

    pub fn parse(line: &str) -> Result<Self, NoteError> {
        let rest = line.strip_prefix(DASH).ok_or(NoteError::BadSignatureLine("it does not start with an em dash"))?;
        let (name, encoded) = rest.split_once(' ').ok_or(NoteError::BadSignatureLine("no signature after the name"))?;
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName);
        }
        let bytes = STANDARD.decode(encoded).map_err(|_| NoteError::BadSignatureLine("the signature is not base64"))?;
        if bytes.len() < 5 {
            return Err(NoteError::BadSignatureLine("the signature is too short"));
        }
        let key_id = [bytes[0], bytes[1], bytes[2], bytes[3]];
        Ok(SignatureLine { name: name.to_owned(), key_id, signature: bytes[4..].to_vec() })
    }
}

/// A signed note: its text (ending in a newline) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<SignatureLine>,
}

impl Note {
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::ControlCharacter);
        }
        // The text ends at the last blank line; it keeps its final newline.
        let split = note.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
        let (text, rest) = (&note[..=split], &note[split + 2..]);
        let lines = rest.strip_suffix('\n').ok_or(NoteError::BadSignatureLine("the note does not end in a newline"))?;
        let signatures: Vec<SignatureLine> = lines.split('\n').map(SignatureLine::parse).collect::<Result<_, _>>()?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        Ok(Note { text: text.to_owned(), signatures })
    }

    pub fn render(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.render());
            out.push('\n');
        }
        out
    }
}

/// The note key id of an ECDSA key (type 0x02): the first four bytes of SHA-256 of its DER
/// SubjectPublicKeyInfo.
pub fn ecdsa_key_id(public_key_der: &[u8]) -> [u8; 4] {
    first_four(Hash::of(&[public_key_der]))
}

/// The key id of an Ed25519 cosigner: `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]`.
pub fn cosigner_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    first_four(Hash::of(&[name.as_bytes(), b"\n", &[COSIGNATURE_TYPE], public_key]))
}

fn first_four(h: Hash) -> [u8; 4] {
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

/// What a `cosignature/v1` signs: two header lines, then the checkpoint's note text.
pub fn cosigned_message(timestamp: u64, note_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{note_text}").into_bytes()
}

/// A cosigner's public key, as a verifier pins it: the vkey `<name>+<hex key id>+base64(0x04 ‖ key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    pub name: String,
    pub public_key: [u8; 32],
}

impl CosignerKey {
    pub fn key_id(&self) -> [u8; 4] {
        cosigner_key_id(&self.name, &self.public_key)
    }

    pub fn vkey(&self) -> String {
        let mut material = vec![COSIGNATURE_TYPE];
        material.extend_from_slice(&self.public_key);
        let id: String = self.key_id().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}+{id}+{}", self.name, STANDARD.encode(material))
    }

    pub fn parse_vkey(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadVerifierKey("it is not <name>+<key id>+<key>"));
        };
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName);
        }
        let material = STANDARD.decode(material).map_err(|_| NoteError::BadVerifierKey("the key is not base64"))?;
        let Some((&COSIGNATURE_TYPE, key)) = material.split_first() else {
            return Err(NoteError::BadVerifierKey("not an Ed25519 cosignature key (type 0x04)"));
        };
        let public_key: [u8; 32] =
            key.try_into().map_err(|_| NoteError::BadVerifierKey("an Ed25519 key is 32 bytes"))?;
        let key = CosignerKey { name: name.to_owned(), public_key };
        let expected: String = key.key_id().iter().map(|b| format!("{b:02x}")).collect();
        if id != expected {
            return Err(NoteError::BadVerifierKey("its key id does not match its name and key"));
        }
        Ok(key)
    }

    /// The time a cosignature line states, if the line is this key's and its signature of
    /// `note_text` verifies. Lines of other keys (another name or id) are not this key's: `None`.
    pub fn verify(&self, note_text: &str, line: &SignatureLine) -> Option<u64> {
        if line.name != self.name || line.key_id != self.key_id() || line.signature.len() != 72 {
            return None;
        }
        let timestamp = u64::from_be_bytes(line.signature[..8].try_into().ok()?);
        if timestamp > i64::MAX as u64 {
            return None;
        }
        let message = cosigned_message(timestamp, note_text);
        UnparsedPublicKey::new(&ED25519, &self.public_key).verify(&message, &line.signature[8..]).ok()?;
        Some(timestamp)
    }
}

/// An Ed25519 cosigning key held in this process (a witness's).
pub struct Cosigner {
    name: String,
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl Cosigner {
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| NoteError::Key(e.to_string()))?;
        Self::from_pkcs8(name, document.as_ref())
    }

    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName);
        }
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| NoteError::Key(format!("not an Ed25519 key: {e}")))?;
        Ok(Cosigner { name: name.to_owned(), pair, pkcs8: pkcs8.to_vec() })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_key(&self) -> CosignerKey {
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(self.pair.public_key().as_ref());
        CosignerKey { name: self.name.clone(), public_key }
    }

    /// A `cosignature/v1` of `note_text` at `timestamp` (POSIX seconds).
    pub fn cosign(&self, note_text: &str, timestamp: u64) -> SignatureLine {
        let signature = self.pair.sign(&cosigned_message(timestamp, note_text));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(signature.as_ref());
        SignatureLine { name: self.name.clone(), key_id: self.public_key().key_id(), signature: bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of c2sp.org/signed-note: its vkey verifies its note (as an Ed25519 note, type
    /// 0x01, whose key id and message differ from a cosignature's; checked here by hand).
    #[test]
    fn the_specifications_example_parses() {
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let parsed = Note::parse(note).unwrap();
        assert_eq!(parsed.text, "This is an example message.\n");
        assert_eq!(parsed.signatures[0].name, "example.com/foo");
        assert_eq!(parsed.signatures[0].key_id, [0x53, 0x0d, 0x90, 0x3a]);
        assert_eq!(parsed.render(), note);
        let material = STANDARD.decode("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
        let key = &material[1..];
        let id = first_four(Hash::of(&[b"example.com/foo\n\x01", key]));
        assert_eq!(id, parsed.signatures[0].key_id);
        UnparsedPublicKey::new(&ED25519, key).verify(parsed.text.as_bytes(), &parsed.signatures[0].signature).unwrap();
    }

    #[test]
    fn a_cosignature_verifies_with_its_vkey_only() {
        let cosigner = Cosigner::generate("witness.example/w1").unwrap();
        let text = "example.com/log\n5\nAAAA\n";
        let line = cosigner.cosign(text, 1_700_000_000);
        let key = CosignerKey::parse_vkey(&cosigner.public_key().vkey()).unwrap();
        assert_eq!(key.verify(text, &line), Some(1_700_000_000));
        assert_eq!(key.verify("example.com/log\n6\nAAAA\n", &line), None);
        let parsed = SignatureLine::parse(&line.render()).unwrap();
        assert_eq!(parsed, line);
        let other = Cosigner::generate("witness.example/w1").unwrap().public_key();
        assert_eq!(other.verify(text, &line), None);
        assert!(CosignerKey::parse_vkey(&key.vkey().replace("w1+", "w2+")).is_err(), "the id binds the name");
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            "no blank line\n",
            "text\n\nnot a signature\n",
            "text\n\n\u{2014} name\n",
            "a\u{7}b\n\n\u{2014} n AAAAAAA=\n",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
    }
}
