//! Condition waits with deadlines: the harness never sleeps a fixed time "to let things settle".

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How long to pause between two evaluations of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Poll `cond` every [`POLL_INTERVAL`] until it holds; returns the time it took, or an
/// error naming `what` once `deadline` has passed.
pub fn wait_until(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration> {
    wait_for(deadline, what, || cond().then_some(())).map(|((), took)| took)
}

/// Poll `f` until it yields a value; returns the value and the time it took, or an error
/// naming `what` once `deadline` has passed.
pub fn wait_for<T>(
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return Ok((value, start.elapsed()));
        }
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Block until the clock reaches `instant` (a wait on the clock itself, used where
/// time passing is the thing under test, e.g. a TTL running out).
pub fn wait_until_instant(instant: Instant) {
    while let Some(left) = instant.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        thread::sleep(left.min(POLL_INTERVAL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A condition that becomes true is reported with its elapsed time.
    #[test]
    fn succeeds_when_condition_holds() -> Result<()> {
        let mut n = 0;
        let took = wait_until(Duration::from_secs(5), "n reaches 3", || {
            n += 1;
            n >= 3
        })?;
        assert!(took < Duration::from_secs(5));
        Ok(())
    }

    /// A condition that never holds produces an error naming it.
    #[test]
    fn times_out_with_message() {
        let err = wait_until(Duration::from_millis(30), "the impossible", || false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("the impossible"), "{err}");
    }

    /// Waiting on the clock returns no earlier than the target instant.
    #[test]
    fn instant_wait_reaches_target() {
        let target = Instant::now() + Duration::from_millis(20);
        wait_until_instant(target);
        assert!(Instant::now() >= target);
    }
}
