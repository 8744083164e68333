//! A bounded queue in front of one pipeline: `workers` requests run at once, at most
//! `max_waiting` more wait; past that a request is refused at once (503), never left
//! hanging.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    Full(&'static str),
    TimedOut(&'static str),
}

pub struct Queue {
    pub name: &'static str,
    workers: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Queue {
    pub fn new(name: &'static str, workers: usize, max_waiting: usize) -> Self {
        Self {
            name,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Requests waiting for a worker now.
    pub fn depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub async fn acquire(&self, limit: Duration) -> Result<OwnedSemaphorePermit, QueueError> {
        if let Ok(p) = self.workers.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueError::Full(self.name));
        }
        let got = tokio::time::timeout(limit, self.workers.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(p),
            // The semaphore is never closed; a timeout is the only other way out.
            _ => Err(QueueError::TimedOut(self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let q = Queue::new("test", 1, 1);
        let held = q.acquire(Duration::from_secs(1)).await.expect("first");
        let q = Arc::new(q);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.acquire(Duration::from_secs(5)).await.map(|_| ()) })
        };
        while q.depth() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            q.acquire(Duration::from_secs(5)).await.err(),
            Some(QueueError::Full("test"))
        );
        drop(held);
        assert_eq!(waiter.await.expect("join"), Ok(()));
        assert_eq!(q.depth(), 0);
        let _a = q.acquire(Duration::from_secs(1)).await.expect("free again");
        assert_eq!(
            q.acquire(Duration::from_millis(20)).await.err(),
            Some(QueueError::TimedOut("test"))
        );
    }
}
