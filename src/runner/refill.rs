//! When `runner-admin cycle` asks for its next batch (docs/runner.md, "Concurrency").
//!
//! Early enough that the sessions never wait for the dispatcher's round trip and claim,
//! late enough that a runner facing slow servers does not hold messages another runner
//! could deliver meanwhile: the next batch is asked for once the messages still queued
//! would last less than twice the last request took, at the rate the sessions finish
//! messages while they have work — never later than when `max_sessions` wait, never more
//! than one batch ahead. The first request asks only for enough to open every session, so
//! delivery starts after a short claim instead of a full one; each next one for four
//! times as many, up to `batch_size`, so the next batch arrives while the last is
//! delivered.

use std::time::{Duration, Instant};

/// Requests this much longer than the last one took still leave the sessions busy.
const MARGIN: f64 = 2.0;

/// A rate is taken over at least this long (the first outcomes come in a burst).
const MIN_SPAN: Duration = Duration::from_millis(10);

pub struct Refill {
    max_sessions: usize,
    batch_size: usize,
    /// How long the last request took, from sending it to its batch handed to the sessions.
    last_request: Option<Duration>,
    /// The last rate measured (messages a second while the sessions had work).
    rate: Option<f64>,
    /// Requests that brought a batch so far.
    requests: u32,
}

impl Refill {
    pub fn new(max_sessions: u32, batch_size: u32) -> Refill {
        Refill {
            max_sessions: (max_sessions as usize).max(1),
            batch_size: (batch_size as usize).max(1),
            last_request: None,
            rate: None,
            requests: 0,
        }
    }

    /// How many messages the next request asks for.
    pub fn capacity(&self) -> u32 {
        let n = self
            .max_sessions
            .saturating_mul(4usize.saturating_pow(self.requests))
            .min(self.batch_size);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// A request brought a batch; it took `took`.
    pub fn requested(&mut self, took: Duration) {
        self.last_request = Some(took);
        self.requests = self.requests.saturating_add(1);
    }

    /// The next batch is asked for once no more than this many messages are queued;
    /// `rate` is the sessions' current [`Pace::rate`], if there is one.
    pub fn low_water(&mut self, rate: Option<f64>) -> usize {
        let floor = self.max_sessions;
        let ceiling = self.batch_size.max(floor);
        if rate.is_some() {
            self.rate = rate;
        }
        let Some(took) = self.last_request else {
            return floor;
        };
        let Some(rate) = self.rate else {
            // No rate yet: keep one batch ahead until there is one.
            return ceiling;
        };
        let wanted = (rate * took.as_secs_f64() * MARGIN).ceil();
        (wanted.min(ceiling as f64) as usize).max(floor)
    }
}

/// The rate at which the sessions finish messages while they have work: counted from the
/// first outcome after messages were queued; a moment with nothing queued starts it again
/// (sessions waiting for work would make the rate look slow, and the next request later
/// still).
#[derive(Default)]
pub struct Pace {
    since: Option<Instant>,
    outcomes: usize,
}

impl Pace {
    /// One more outcome; `queued` messages are still waiting for a session.
    pub fn outcome(&mut self, now: Instant, queued: usize) {
        if queued == 0 {
            *self = Pace::default();
        } else if self.since.is_none() {
            self.since = Some(now);
        } else {
            self.outcomes += 1;
        }
    }

    pub fn rate(&self, now: Instant) -> Option<f64> {
        let span = now.saturating_duration_since(self.since?);
        if self.outcomes == 0 || span < MIN_SPAN {
            return None;
        }
        Some(self.outcomes as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_start_with_enough_to_open_every_session_and_grow_fourfold() {
        let mut r = Refill::new(20, 1000);
        let mut asked = Vec::new();
        for _ in 0..5 {
            asked.push(r.capacity());
            r.requested(Duration::from_millis(30));
        }
        assert_eq!(asked, [20, 80, 320, 1000, 1000]);
        // A batch smaller than the sessions is asked for whole.
        assert_eq!(Refill::new(100, 50).capacity(), 50);
    }

    #[test]
    fn before_any_request_the_next_batch_waits_for_max_sessions() {
        let mut r = Refill::new(20, 1000);
        assert_eq!(r.low_water(None), 20);
        assert_eq!(r.low_water(Some(10_000.0)), 20);
    }

    #[test]
    fn without_a_rate_yet_one_batch_is_kept_ahead() {
        let mut r = Refill::new(20, 1000);
        r.requested(Duration::from_millis(30));
        assert_eq!(r.low_water(None), 1000);
    }

    #[test]
    fn fast_sessions_ask_early_and_slow_ones_late() {
        let mut r = Refill::new(20, 1000);
        r.requested(Duration::from_millis(80));
        // 10,000 messages a second, 80 ms a request: 1,600 wanted, one batch at most.
        assert_eq!(r.low_water(Some(10_000.0)), 1000);
        // 2,000 a second: 320.
        assert_eq!(r.low_water(Some(2_000.0)), 320);
        // 100 a second (late-answering servers): the floor, max_sessions.
        assert_eq!(r.low_water(Some(100.0)), 20);
    }

    #[test]
    fn the_last_rate_holds_while_no_new_one_is_measured() {
        let mut r = Refill::new(20, 1000);
        r.requested(Duration::from_millis(80));
        assert_eq!(r.low_water(Some(2_000.0)), 320);
        assert_eq!(r.low_water(None), 320);
    }

    #[test]
    fn pace_counts_only_while_messages_wait() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = Pace::default();
        assert_eq!(p.rate(t0), None);
        p.outcome(t0, 500);
        assert_eq!(p.rate(ms(1)), None, "one outcome is no rate");
        for i in 1..=100 {
            p.outcome(ms(i), 500);
        }
        assert_eq!(p.rate(ms(100)), Some(1000.0));
        // Nothing queued: the sessions may go idle; the next rate starts afresh.
        p.outcome(ms(101), 0);
        assert_eq!(p.rate(ms(2000)), None);
        p.outcome(ms(2000), 900);
        p.outcome(ms(2005), 900);
        assert_eq!(p.rate(ms(2005)), None, "shorter than the least span");
        p.outcome(ms(2020), 900);
        assert_eq!(p.rate(ms(2020)), Some(100.0));
    }
}
