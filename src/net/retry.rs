//! One retry policy for every HTTP client: the servers' own hints first, in the official
//! SDKs' order, then exponential backoff with jitter, every wait capped.
//!
//! Hints: `x-should-retry` decides whether to retry at all; the wait is `retry-after-ms`, else
//! `retry-after` (seconds or an HTTP date), else a hint the caller found in the error body
//! (Gemini's `RetryInfo.retryDelay`, see [`google_duration`]). Every value comes from the
//! network, so none may panic: NaN and negative values are ignored, and a wait too long for a
//! [`Duration`] saturates to [`Duration::MAX`] — still the wait that was asked for, and far
//! past [`RetryPolicy::max_wait`], so it is reported rather than waited out.
//!
//! The backoff schedule is backon's exponential backoff: each nominal delay (`backoff`
//! doubling to `backoff_cap`) is jittered to between half and all of itself, so clients that
//! failed together spread out, and no wait ever exceeds the cap.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use reqwest::{StatusCode, header::HeaderMap};

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Longest wait a server may ask for and still be retried.
    pub max_wait: Duration,
    /// First backoff when the server gives no hint; doubles per attempt.
    pub backoff: Duration,
    /// Longest backoff without a hint.
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    /// The official SDKs' numbers: 2 retries, 0.5 s doubling to 8 s, hints up to 60 s.
    fn default() -> Self {
        Self {
            max_retries: 2,
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(8),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// Every retry is used up.
    Exhausted,
    /// The server asked for a longer wait than the policy allows (the wait it asked for).
    TooLong(Duration),
}

/// The retries of one request under a [`RetryPolicy`].
#[derive(Debug)]
pub struct Retry {
    policy: RetryPolicy,
    retried: u32,
    schedule: ExponentialBackoff,
}

impl Retry {
    pub fn new(policy: &RetryPolicy) -> Self {
        let schedule = ExponentialBuilder::new()
            // backon's jitter adds up to 100 % of the delay: start from half of it.
            .with_min_delay(policy.backoff / 2)
            .with_max_delay(policy.backoff_cap / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Self {
            policy: *policy,
            retried: 0,
            schedule,
        }
    }

    /// Retries made so far.
    pub fn retried(&self) -> u32 {
        self.retried
    }

    /// Count one more retry: how long to wait first, given the server's `hint` (a zero hint
    /// counts as none, as the SDKs do).
    pub fn next(&mut self, hint: Option<Duration>) -> Next {
        if self.retried >= self.policy.max_retries {
            return Next::Exhausted;
        }
        let wait = match hint {
            Some(asked) if asked > self.policy.max_wait => return Next::TooLong(asked),
            Some(asked) if !asked.is_zero() => asked,
            _ => self.backoff(),
        };
        self.retried += 1;
        Next::Wait(wait)
    }

    /// The next backoff of the schedule, without counting a retry (for callers that count
    /// attempts themselves).
    pub fn backoff(&mut self) -> Duration {
        self.schedule
            .next()
            .unwrap_or(self.policy.backoff_cap)
            .min(self.policy.backoff_cap)
    }
}

/// The statuses the SDKs retry: 408, 409, 429 and every 5xx.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// `x-should-retry: true|false`, which overrides the status rule.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A wait of `secs` seconds as a server wrote it: `None` when it is no wait at all (NaN,
/// negative), saturated to [`Duration::MAX`] when it is too long to represent.
pub fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `retry-after-ms` (float ms), else `retry-after` (float seconds or an HTTP date).
pub fn header_hint(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(wait) = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    retry_after(text("retry-after")?)
}

/// A `Retry-After` value: seconds (fractional accepted), or an HTTP date (a past date: now).
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Seconds written like Google's `Duration` JSON: `"37s"`, `"1.5s"`.
pub fn google_duration(text: &str) -> Option<Duration> {
    seconds(text.trim().strip_suffix('s')?.parse().ok()?)
}

/// A wait in words, however long: `1.5 s`, `37 s`, `15 min`, `3 h`, `12 days`.
pub fn describe_wait(wait: Duration) -> String {
    let secs = wait.as_secs_f64();
    if secs < 120.0 {
        let text = format!("{secs:.1}");
        format!("{} s", text.trim_end_matches(".0"))
    } else if secs < 2.0 * 3600.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 2.0 * 86_400.0 {
        format!("{:.0} h", secs / 3600.0)
    } else if secs < 36_500.0 * 86_400.0 {
        format!("{:.0} days", secs / 86_400.0)
    } else {
        "more than a century".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn hints_in_sdk_order() {
        let mut h = headers(&[("retry-after", "2")]);
        assert_eq!(header_hint(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(header_hint(&h), Some(Duration::from_micros(150_500)));
        let h = headers(&[("retry-after", "0.25")]);
        assert_eq!(header_hint(&h), Some(Duration::from_millis(250)));
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(header_hint(&h), Some(Duration::ZERO), "a past date: now");
        assert_eq!(google_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(google_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(google_duration("soon"), None);
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "false")])),
            Some(false)
        );
        assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
    }

    /// Before: `Duration::from_secs_f64` panicked on each of these.
    #[test]
    fn no_hint_from_the_network_can_panic() {
        for (name, value) in [
            ("retry-after", "1e300"),
            ("retry-after", "99999999999999999999999"),
            ("retry-after", "inf"),
            ("retry-after-ms", "1e30"),
            ("retry-after-ms", "1.9e22"),
        ] {
            assert_eq!(
                header_hint(&headers(&[(name, value)])),
                Some(Duration::MAX),
                "{name}: {value}"
            );
        }
        for (name, value) in [
            ("retry-after", "-5"),
            ("retry-after", "NaN"),
            ("retry-after", "-inf"),
            ("retry-after-ms", "NaN"),
            ("retry-after", "soon"),
        ] {
            assert_eq!(header_hint(&headers(&[(name, value)])), None, "{name}");
        }
        // An unusable retry-after-ms falls back to retry-after.
        let h = headers(&[("retry-after-ms", "-1"), ("retry-after", "3")]);
        assert_eq!(header_hint(&h), Some(Duration::from_secs(3)));
        let far = headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert!(header_hint(&far).unwrap() > Duration::from_secs(86_400 * 365 * 7000));
        assert_eq!(
            google_duration("99999999999999999999999s"),
            Some(Duration::MAX)
        );
        assert_eq!(google_duration("-1s"), None);
        assert_eq!(google_duration("NaNs"), None);
        assert_eq!(seconds(f64::MAX), Some(Duration::MAX));
    }

    #[test]
    fn a_wait_longer_than_the_cap_is_reported_not_waited() {
        let policy = RetryPolicy::default();
        let mut retry = Retry::new(&policy);
        assert_eq!(
            retry.next(Some(Duration::MAX)),
            Next::TooLong(Duration::MAX)
        );
        assert_eq!(
            retry.next(Some(Duration::from_secs(61))),
            Next::TooLong(Duration::from_secs(61))
        );
        assert_eq!(
            retry.next(Some(Duration::from_secs(60))),
            Next::Wait(Duration::from_secs(60))
        );
        assert!(matches!(retry.next(Some(Duration::ZERO)), Next::Wait(d) if d <= policy.backoff));
        assert_eq!(retry.next(None), Next::Exhausted);
        assert_eq!(retry.retried(), 2);
        assert_eq!(describe_wait(Duration::MAX), "more than a century");
        assert_eq!(describe_wait(Duration::from_secs(37)), "37 s");
        assert_eq!(describe_wait(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(describe_wait(Duration::from_secs(900)), "15 min");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        let mut retry = Retry::new(&policy);
        let waits: Vec<Duration> = (0..12).map(|_| retry.backoff()).collect();
        let ms = Duration::from_millis;
        assert!(waits[0] >= ms(250) && waits[0] <= ms(500), "{waits:?}");
        assert!(waits[1] >= ms(500) && waits[1] <= ms(1000), "{waits:?}");
        for w in &waits[6..] {
            assert!(*w >= ms(4000) && *w <= ms(8000), "{waits:?}");
        }
        let huge = RetryPolicy {
            backoff: Duration::MAX,
            backoff_cap: Duration::MAX,
            ..policy
        };
        let mut retry = Retry::new(&huge);
        for _ in 0..3 {
            let _ = retry.backoff();
        }
    }
}
