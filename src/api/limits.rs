//! Per-key rate limits: requests and tokens per minute over a sliding 60-second
//! window. A request is admitted while the key's requests and tokens of the last
//! minute are under its limits; otherwise the answer says how long until enough of
//! the window has passed (`Retry-After`). Tokens are counted after the fact (a
//! request's prompt when it is admitted, its completion when it ends), so one request
//! may take a key past its token limit once; the next waits.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the limits are per.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A key's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub requests: u32,
    /// Tokens per minute.
    pub tokens: u64,
}

/// What a key used at one instant: a request and/or tokens.
#[derive(Debug, Clone, Copy)]
struct Use {
    at: Instant,
    requests: u32,
    tokens: u64,
}

/// The sliding windows of every key seen (memory: at most one entry per request and
/// one per completion within the window, per key).
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, VecDeque<Use>>>,
}

impl RateLimiter {
    /// Admits one request of `key` at `now` (recording it and its `prompt_tokens`), or
    /// says how long to wait (at least one second).
    pub fn admit(
        &self,
        key: &str,
        limits: Limits,
        prompt_tokens: u64,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut windows = self.windows.lock().expect("rate limiter lock");
        let window = windows.entry(key.to_string()).or_default();
        while window
            .front()
            .is_some_and(|u| now.duration_since(u.at) >= WINDOW)
        {
            window.pop_front();
        }
        let requests: u32 = window.iter().map(|u| u.requests).sum();
        let tokens: u64 = window.iter().map(|u| u.tokens).sum();
        if requests < limits.requests && tokens < limits.tokens {
            window.push_back(Use {
                at: now,
                requests: 1,
                tokens: prompt_tokens,
            });
            return Ok(());
        }
        // The first instant at which both sums are under their limits again.
        let (mut requests, mut tokens) = (requests, tokens);
        for used in window.iter() {
            requests -= used.requests;
            tokens -= used.tokens;
            if requests < limits.requests && tokens < limits.tokens {
                let free = (used.at + WINDOW).saturating_duration_since(now);
                return Err(free.max(Duration::from_secs(1)));
            }
        }
        Err(WINDOW)
    }

    /// Records `tokens` more used by `key` at `now` (a completion's).
    pub fn record_tokens(&self, key: &str, tokens: u64, now: Instant) {
        let mut windows = self.windows.lock().expect("rate limiter lock");
        windows.entry(key.to_string()).or_default().push_back(Use {
            at: now,
            requests: 0,
            tokens,
        });
    }
}

/// A text's token count as the API estimates it: one per 4 bytes, rounded up (the
/// miners' tokenizers are unknown to the validator).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_tokens_are_limited_per_key_over_a_sliding_minute() {
        let limiter = RateLimiter::default();
        let limits = Limits {
            requests: 2,
            tokens: 100,
        };
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", limits, 10, t0), Ok(()));
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(limiter.admit("a", limits, 10, t1), Ok(()));
        let t2 = t0 + Duration::from_secs(30);
        // The first request leaves the window at t0 + 60 s: 30 s from t2.
        assert_eq!(
            limiter.admit("a", limits, 10, t2),
            Err(Duration::from_secs(30))
        );
        assert_eq!(limiter.admit("b", limits, 10, t2), Ok(()), "per key");
        let t3 = t0 + Duration::from_secs(61);
        assert_eq!(limiter.admit("a", limits, 10, t3), Ok(()));
        // Tokens: a long completion exhausts the minute until it leaves the window.
        limiter.record_tokens("b", 500, t3);
        assert_eq!(
            limiter.admit("b", limits, 10, t3 + Duration::from_secs(1)),
            Err(Duration::from_secs(59))
        );
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("hello"), 2);
    }
}
