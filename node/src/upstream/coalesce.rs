//! Coalescing: identical questions in flight share one upstream exchange.

use std::future::Future;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::{Answer, ForwardError};

/// The shared outcome of one upstream resolution.
type Outcome = Result<Arc<Answer>, ForwardError>;

/// Questions in flight, keyed by cache key.
#[derive(Debug, Default)]
pub struct Inflight {
    /// One cell per question in flight; every caller with the same key awaits the same cell.
    map: DashMap<Box<[u8]>, Arc<OnceCell<Outcome>>>,
}

impl Inflight {
    /// Run `work` for `key` unless the same key is already in flight, in which case wait for
    /// that one's outcome. Returns the outcome and whether this call ran the work.
    pub async fn run<F, Fut>(&self, key: &[u8], work: F) -> (Outcome, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let cell = match self.map.get(key) {
            Some(cell) => Arc::clone(&cell),
            None => Arc::clone(self.map.entry(key.into()).or_default().value()),
        };
        let mut ran = false;
        let outcome = cell
            .get_or_init(|| {
                ran = true;
                work()
            })
            .await
            .clone();
        // The first caller to finish removes the entry, but only if it is still this cell
        // (a later question may already have started a new one).
        self.map.remove_if(key, |_, v| Arc::ptr_eq(v, &cell));
        (outcome, ran)
    }

    /// Number of questions in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// Many concurrent callers with the same key run the work once and all get its outcome.
    #[tokio::test(start_paused = true)]
    async fn concurrent_identical_questions_run_once() {
        let inflight = Arc::new(Inflight::default());
        let runs = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let inflight = Arc::clone(&inflight);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                inflight
                    .run(b"key", || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Err(ForwardError::NoUpstream)
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (outcome, leader) = t.await.expect("task");
            assert!(matches!(outcome, Err(ForwardError::NoUpstream)));
            leaders += usize::from(leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert!(inflight.is_empty());
    }
}
