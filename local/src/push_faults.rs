//! Fault injection for the live feed's posts, for soak runs: a share of posts answered as API
//! Gateway's management API does when it is throttling (429) or failing (5xx), without delivering.
//! Set `AUDITLINE_PUSH_FAULTS_PER_MILLE` (0, the default, injects nothing). A 410 is not injected
//! here: locally it would forget a connection whose socket stays open; the stream function's
//! binary test answers 410 from its stand-in of the management API instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use auditline::realtime::{PushError, Pusher};

pub struct FaultyPusher {
    inner: Arc<dyn Pusher>,
    per_mille: u64,
    posts: AtomicU64,
}

impl FaultyPusher {
    pub fn new(inner: Arc<dyn Pusher>, per_mille: u64) -> Self {
        FaultyPusher { inner, per_mille: per_mille.min(1000), posts: AtomicU64::new(0) }
    }

    /// Every post whose number crosses a multiple of 1000 / share fails: evenly spread, and the
    /// same run after run.
    fn fault(&self) -> Option<PushError> {
        let n = self.posts.fetch_add(1, Ordering::Relaxed);
        let crossed = (n + 1) * self.per_mille / 1000 > n * self.per_mille / 1000;
        crossed.then(|| {
            if (n * self.per_mille / 1000).is_multiple_of(2) {
                PushError::Throttled
            } else {
                PushError::Other("injected 500".into())
            }
        })
    }
}

#[async_trait]
impl Pusher for FaultyPusher {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        match self.fault() {
            Some(e) => Err(e),
            None => self.inner.push(connection_id, message).await,
        }
    }

    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        self.inner.close(connection_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Accepting;

    #[async_trait]
    impl Pusher for Accepting {
        async fn push(&self, _: &str, _: &[u8]) -> Result<(), PushError> {
            Ok(())
        }
        async fn close(&self, _: &str) -> Result<(), PushError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn fails_the_chosen_share_of_posts_with_both_kinds_of_retryable_error() {
        let pusher = FaultyPusher::new(Arc::new(Accepting), 50);
        let mut results = Vec::new();
        for _ in 0..1000 {
            results.push(pusher.push("c", b"m").await);
        }
        let throttled = results.iter().filter(|r| matches!(r, Err(PushError::Throttled))).count();
        let failed = results.iter().filter(|r| matches!(r, Err(PushError::Other(_)))).count();
        assert_eq!((throttled, failed), (25, 25));
        assert!(results.iter().all(|r| r.as_ref().map_or_else(PushError::is_retryable, |()| true)));
    }
}
