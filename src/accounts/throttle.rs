//! Throttling of guesses. Per account (in the database, so it holds across instances): after
//! five consecutive failures of a kind, each further try waits 1 s, 2 s, 4 s … up to 15 minutes;
//! success resets it; 100 consecutive second-factor failures lock second-factor login until a
//! recovery or an admin reset (NIST SP 800-63B §5.2.2 allows at most 100).
//!
//! Waits are kept to the millisecond (`Clock::unix_millis`): with whole seconds, a failure at
//! 10.999 s and a retry at 11.000 s would have been "a second" apart.

use crate::clock::Clock;
use crate::store::Connection;

use crate::store::throttles::{self, ThrottleRow};

pub const FREE_FAILURES: i64 = 5;
pub const MAX_DELAY_SECONDS: i64 = 900;
pub const LOCK_AFTER_FAILURES: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Password,
    SecondFactor,
    Reauth,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Password => "password",
            Kind::SecondFactor => "second_factor",
            Kind::Reauth => "reauth",
        }
    }

    fn locks(self) -> bool {
        self == Kind::SecondFactor
    }
}

/// Seconds to wait after `failures` consecutive failures.
pub fn delay_after(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        0
    } else {
        let exponent = (failures - FREE_FAILURES).min(20) as u32;
        (1i64 << exponent).min(MAX_DELAY_SECONDS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Try again after this many seconds.
    Wait(i64),
    /// Locked until recovery or an admin reset.
    Locked,
}

/// Refuses an attempt while the subject must wait, before any guess is checked.
pub async fn check(
    conn: &mut Connection,
    subject: &str,
    kind: Kind,
    clock: &dyn Clock,
) -> anyhow::Result<Result<(), Blocked>> {
    let row = throttles::get(conn, subject, kind.as_str()).await?;
    Ok(verdict(&row, clock.unix_millis()))
}

/// Whether a subject with this throttle state may try now. The wait is told in whole seconds,
/// rounded up, so a client that waits that long is let in.
pub fn verdict(row: &ThrottleRow, now_ms: i64) -> Result<(), Blocked> {
    if row.locked != 0 {
        return Err(Blocked::Locked);
    }
    if row.retry_at_ms > now_ms {
        let wait_ms = row.retry_at_ms - now_ms;
        return Err(Blocked::Wait((wait_ms + 999) / 1000));
    }
    Ok(())
}

/// What a recorded failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub failures: i64,
    /// This failure started the waiting (the fifth in a row): worth telling the user.
    pub started_throttling: bool,
    pub locked_now: bool,
}

pub async fn record_failure(
    conn: &mut Connection,
    subject: &str,
    kind: Kind,
    clock: &dyn Clock,
) -> anyhow::Result<Failure> {
    let failures = throttles::add_failure(conn, subject, kind.as_str()).await?;
    let locked_now = kind.locks() && failures >= LOCK_AFTER_FAILURES;
    let delay = delay_after(failures);
    if delay > 0 || locked_now {
        throttles::set_retry(
            conn,
            subject,
            kind.as_str(),
            clock.unix_millis() + delay * 1000,
            locked_now,
        )
        .await?;
    }
    Ok(Failure {
        failures,
        started_throttling: failures == FREE_FAILURES,
        locked_now: locked_now && failures == LOCK_AFTER_FAILURES,
    })
}

pub async fn reset(conn: &mut Connection, subject: &str, kind: Kind) -> anyhow::Result<()> {
    throttles::reset(conn, subject, kind.as_str()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failures_are_free_then_delays_double_up_to_fifteen_minutes() {
        assert_eq!(delay_after(4), 0);
        assert_eq!(delay_after(5), 1);
        assert_eq!(delay_after(6), 2);
        assert_eq!(delay_after(7), 4);
        assert_eq!(delay_after(14), 512);
        assert_eq!(delay_after(15), 900);
        assert_eq!(delay_after(1000), 900);
    }

    #[test]
    fn a_locked_or_waiting_subject_is_refused_until_its_time() {
        let waiting = ThrottleRow {
            failures: 6,
            retry_at_ms: 110_000,
            locked: 0,
        };
        assert_eq!(verdict(&waiting, 100_000), Err(Blocked::Wait(10)));
        // A millisecond short is still a wait, told as a whole second.
        assert_eq!(verdict(&waiting, 109_999), Err(Blocked::Wait(1)));
        assert_eq!(verdict(&waiting, 109_001), Err(Blocked::Wait(1)));
        assert_eq!(verdict(&waiting, 110_000), Ok(()));
        let locked = ThrottleRow { locked: 1, ..waiting };
        assert_eq!(verdict(&locked, 1_000_000), Err(Blocked::Locked));
        assert_eq!(verdict(&ThrottleRow::default(), 0), Ok(()));
    }

    #[test]
    fn exhausting_a_million_totp_codes_takes_more_than_a_year() {
        // With 3 valid codes per window (±1 step), an attacker needs ~333,333 guesses for even odds
        // of covering the space; past the first few, every guess waits at least the cap until the
        // lock at 100 stops it entirely. Without the lock, 10^6 guesses at 900 s each:
        let seconds: i64 = (1..=1_000_000).map(delay_after).sum();
        assert!(seconds > 365 * 24 * 3600);
    }
}
