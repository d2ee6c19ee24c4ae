//! Per-client-IP limit on failed authentication attempts: at most 100 a minute. In memory (each
//! instance counts its own); the per-account throttle in the database is what holds across
//! instances.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::audit::ClientInfo;

pub const FAILURES_PER_WINDOW: u32 = 100;
pub const WINDOW_SECONDS: i64 = 60;
/// Past this many tracked addresses, stale windows are swept so memory stays bounded.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct IpLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started_at: i64,
    failures: u32,
}

impl IpLimiter {
    /// `Err(retry_after_seconds)` while the client's address has used up its failures.
    pub fn check(&self, client: &ClientInfo, now: i64) -> Result<(), i64> {
        let Some(ip) = &client.ip else { return Ok(()) };
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match windows.get(ip) {
            Some(window) if now < window.started_at + WINDOW_SECONDS && window.failures >= FAILURES_PER_WINDOW => {
                Err((window.started_at + WINDOW_SECONDS - now).max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, client: &ClientInfo, now: i64) {
        let Some(ip) = &client.ip else { return };
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, window| now < window.started_at + WINDOW_SECONDS);
        }
        let window = windows.entry(ip.clone()).or_insert(Window {
            started_at: now,
            failures: 0,
        });
        if now >= window.started_at + WINDOW_SECONDS {
            *window = Window {
                started_at: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str) -> ClientInfo {
        ClientInfo {
            ip: Some(ip.into()),
            user_agent: None,
        }
    }

    #[test]
    fn a_hundred_failures_a_minute_then_wait() {
        let limiter = IpLimiter::default();
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(limiter.check(&client("10.0.0.1"), 1000).is_ok());
            limiter.record_failure(&client("10.0.0.1"), 1000);
        }
        assert_eq!(limiter.check(&client("10.0.0.1"), 1010), Err(50));
        assert!(limiter.check(&client("10.0.0.2"), 1010).is_ok());
        assert!(limiter.check(&client("10.0.0.1"), 1060).is_ok());
    }
}
