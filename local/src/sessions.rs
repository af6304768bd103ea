//! The local gateway's open WebSocket sessions, as the fan-out's [`Pusher`]: what the API Gateway
//! Management API is when deployed. Bounded: at most `max_sessions` at once, and each session's
//! unsent messages at most `buffer_bytes`, so one client that never reads costs a fixed amount of
//! memory and is answered as API Gateway answers a flood (throttled), not with unbounded growth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use auditline::realtime::fanout::MAX_MESSAGE_BYTES;
use auditline::realtime::{PushError, Pusher};
use tokio::sync::mpsc;

/// A session's queue and the bytes waiting in it.
#[derive(Clone)]
struct Session {
    sender: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
}

/// The receiving end of a session: messages, and the count to give back as they are sent.
pub struct Outbox {
    receiver: mpsc::UnboundedReceiver<String>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// The next message to send; `None` once the session was closed.
    pub async fn next(&mut self) -> Option<String> {
        let message = self.receiver.recv().await?;
        self.queued.fetch_sub(message.len(), Ordering::SeqCst);
        Some(message)
    }
}

pub struct Sessions {
    open: RwLock<HashMap<String, Session>>,
    max_sessions: usize,
    buffer_bytes: usize,
}

impl Sessions {
    pub fn new(max_sessions: usize, buffer_bytes: usize) -> Self {
        Sessions { open: RwLock::default(), max_sessions, buffer_bytes: buffer_bytes.max(MAX_MESSAGE_BYTES) }
    }

    /// Opens a session's queue, unless `max_sessions` are open. Done before the connection record
    /// is stored, so no entry can find the record without a session to take it.
    pub fn register(&self, connection_id: &str) -> Option<Outbox> {
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max_sessions {
            return None;
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        open.insert(connection_id.to_owned(), Session { sender, queued: queued.clone() });
        Some(Outbox { receiver, queued })
    }

    pub fn remove(&self, connection_id: &str) {
        self.open.write().unwrap_or_else(|p| p.into_inner()).remove(connection_id);
    }

    /// Ends every session (shutdown): each sees its queue close and closes its socket.
    pub fn close_all(&self) {
        self.open.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        self.open.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting to be sent, over every session.
    pub fn queued_bytes(&self) -> usize {
        self.open.read().unwrap_or_else(|p| p.into_inner()).values().map(|s| s.queued.load(Ordering::SeqCst)).sum()
    }
}

#[async_trait]
impl Pusher for Sessions {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(PushError::TooLarge);
        }
        let session = self.open.read().unwrap_or_else(|p| p.into_inner()).get(connection_id).cloned();
        let Some(session) = session else { return Err(PushError::Gone) };
        let text = String::from_utf8_lossy(message).into_owned();
        let reserved = session.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
            (queued + text.len() <= self.buffer_bytes).then_some(queued + text.len())
        });
        if reserved.is_err() {
            return Err(PushError::Throttled);
        }
        let size = text.len();
        session.sender.send(text).map_err(|_| {
            session.queued.fetch_sub(size, Ordering::SeqCst);
            PushError::Gone
        })
    }

    /// Dropping the session's queue ends it: the socket is closed and `$disconnect` runs.
    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        self.remove(connection_id);
        Ok(())
    }
}
