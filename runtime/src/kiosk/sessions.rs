//! Conversations by id: created on first use, history bounded, erased when they
//! expire (no request for `dialogue.session_timeout_s`, by the kiosk's clock) or when
//! asked to. Only the dialogue state is kept (products in focus, preferences, past
//! intents), never the words, and nothing outlives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::dialogue::Session;

/// A session id: 128 random bits, hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    fn random() -> Self {
        let mut b = [0u8; 16];
        // The OS's generator; without one, ids would be guessable: refuse to run.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut b).expect("the operating system's random generator");
        Self(hex::encode(b))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Live conversations kept at most: memory stays bounded whatever a client sends.
pub const MAX_SESSIONS: usize = 4096;

struct Entry {
    session: Session,
    last_used: Instant,
}

pub struct Sessions {
    clock: Arc<dyn Clock>,
    timeout: Duration,
    max_history: usize,
    map: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    pub fn new(clock: Arc<dyn Clock>, timeout: Duration, max_history: usize) -> Self {
        Self {
            clock,
            timeout,
            max_history: max_history.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves every live conversation of `old` here (a release swapped in under a
    /// running service: shoppers keep their conversations).
    pub fn adopt(&self, old: &Sessions) {
        let moved: Vec<(String, Entry)> = old.lock().drain().collect();
        let mut m = self.lock();
        for (id, e) in moved {
            if m.len() < MAX_SESSIONS {
                m.insert(id, e);
            }
        }
    }

    /// Erases every session idle for longer than the timeout; returns how many.
    pub fn expire(&self) -> usize {
        let now = self.clock.now();
        let mut m = self.lock();
        let before = m.len();
        m.retain(|_, e| now.saturating_duration_since(e.last_used) <= self.timeout);
        before - m.len()
    }

    /// A copy of the session `id` for a request to work on (it goes back with
    /// [`Sessions::put`]; two requests at once on one session both keep its id, the
    /// later answer's state wins), or a new one when `id` is `None`, unknown or
    /// expired.
    pub fn take(&self, id: Option<&str>) -> (SessionId, Session) {
        self.expire();
        if let Some(id) = id
            && let Some(e) = self.lock().get(id)
        {
            return (SessionId(id.to_string()), e.session.clone());
        }
        (SessionId::random(), Session::default())
    }

    /// Cuts a conversation's history to `dialogue.max_history_turns`.
    pub fn trim(&self, session: &mut Session) {
        let excess = session.intents.len().saturating_sub(self.max_history);
        session.intents.drain(..excess);
    }

    /// Puts a session back after a request, its history cut to the bound. Past
    /// [`MAX_SESSIONS`] live conversations the one idle longest is erased first.
    pub fn put(&self, id: &SessionId, mut session: Session) {
        self.trim(&mut session);
        let mut m = self.lock();
        if m.len() >= MAX_SESSIONS && !m.contains_key(&id.0) {
            let oldest = m
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(
            id.0.clone(),
            Entry {
                session,
                last_used: self.clock.now(),
            },
        );
    }

    /// A copy of a live session's state.
    pub fn peek(&self, id: &str) -> Option<Session> {
        self.expire();
        self.lock().get(id).map(|e| e.session.clone())
    }

    /// Marks a live session used now (it expires a full timeout later); whether it
    /// was live.
    pub fn touch(&self, id: &str) -> bool {
        self.expire();
        let now = self.clock.now();
        self.lock().get_mut(id).map(|e| e.last_used = now).is_some()
    }

    /// Erases a session; whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.expire();
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn sessions_expire_are_bounded_and_erased() {
        let clock = Arc::new(ManualClock::new("2026-01-01"));
        let s = Sessions::new(clock.clone(), Duration::from_secs(60), 3);
        let (a, mut sa) = s.take(None);
        sa.turns = 5;
        sa.intents = vec![crate::dialogue::Intent::Price; 5];
        s.put(&a, sa);
        let (b, sb) = s.take(None);
        s.put(&b, sb);
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(s.peek(a.as_str()).map(|x| x.intents.len()), Some(3));
        clock.advance(Duration::from_secs(30));
        let (a2, sa2) = s.take(Some(a.as_str()));
        assert_eq!((a2.clone(), sa2.turns), (a.clone(), 5));
        s.put(&a2, sa2);
        clock.advance(Duration::from_secs(45));
        // b idle 75 s: gone; a idle 45 s: kept.
        assert_eq!(s.len(), 1);
        assert!(s.peek(b.as_str()).is_none());
        let (b2, fresh) = s.take(Some(b.as_str()));
        assert_ne!(b2, b);
        assert_eq!(fresh, Session::default());
        assert!(s.remove(a.as_str()));
        assert!(!s.remove(a.as_str()));
        assert!(s.peek(a.as_str()).is_none());
    }

    #[test]
    fn the_longest_idle_session_makes_room() {
        let clock = Arc::new(ManualClock::new("2026-01-01"));
        let s = Sessions::new(clock.clone(), Duration::from_secs(3600), 3);
        let (first, x) = s.take(None);
        s.put(&first, x);
        for _ in 1..MAX_SESSIONS {
            clock.advance(Duration::from_millis(1));
            let (id, x) = s.take(None);
            s.put(&id, x);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        clock.advance(Duration::from_millis(1));
        let (newest, x) = s.take(None);
        s.put(&newest, x);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.peek(first.as_str()).is_none(), "the oldest went");
        assert!(s.peek(newest.as_str()).is_some());
    }
}
