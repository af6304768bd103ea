//! The local gateway's open WebSocket sessions, as the fan-out's [`Pusher`]: what the API Gateway
//! Management API is when deployed.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use auditline::realtime::fanout::MAX_MESSAGE_BYTES;
use auditline::realtime::{PushError, Pusher};
use tokio::sync::mpsc;

/// Messages waiting for one slow client before further ones are refused (as API Gateway throttles).
const QUEUE: usize = 1024;

#[derive(Default)]
pub struct Sessions(RwLock<HashMap<String, mpsc::Sender<String>>>);

impl Sessions {
    /// Opens a session's queue. Done before the connection record is stored, so no entry can find
    /// the record without a session to take it.
    pub fn register(&self, connection_id: &str) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(connection_id.to_owned(), tx);
        rx
    }

    pub fn remove(&self, connection_id: &str) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).remove(connection_id);
    }

    /// Ends every session (shutdown): each sees its queue close and closes its socket.
    pub fn close_all(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Pusher for Sessions {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(PushError::TooLarge);
        }
        let sender = self.0.read().unwrap_or_else(|p| p.into_inner()).get(connection_id).cloned();
        let Some(sender) = sender else { return Err(PushError::Gone) };
        match sender.try_send(String::from_utf8_lossy(message).into_owned()) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PushError::Throttled),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PushError::Gone),
        }
    }

    /// Dropping the session's queue ends it: the socket is closed and `$disconnect` runs.
    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        self.remove(connection_id);
        Ok(())
    }
}
