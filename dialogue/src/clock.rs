//! Time as the kiosk sees it, injected: the dialogue engine and the AR facts ask a
//! [`Clock`] for today's date (promotions run by date, in the device's time zone), and
//! sessions expire by its monotonic time. Tests drive a [`ManualClock`] by hand.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync {
    /// Today's date in the device's time zone, `YYYY-MM-DD`.
    fn today(&self) -> String;
    /// Monotonic time, for expiry.
    fn now(&self) -> Instant;
}

/// The system's clock and time zone (`TZ`, else `/etc/localtime`, else UTC).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn today(&self) -> String {
        jiff::Zoned::now().date().to_string()
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(String, Instant)>,
}

impl ManualClock {
    pub fn new(today: &str) -> Self {
        Self {
            state: Mutex::new((today.to_string(), Instant::now())),
        }
    }
    pub fn set_today(&self, today: &str) {
        self.lock().0 = today.to_string();
    }
    pub fn advance(&self, by: Duration) {
        self.lock().1 += by;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, (String, Instant)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn today(&self) -> String {
        self.lock().0.clone()
    }
    fn now(&self) -> Instant {
        self.lock().1
    }
}
