//! Following the authority's revocation feed: `GET {issuer}/revocations/v1?since=N&wait=S`,
//! long-polled forever, each answer applied to the verifier's [`RevocationSet`].
//!
//! The view's freshness is the time of the last successful answer, empty or not: an empty answer
//! after a long poll is the authority saying "nothing new until now". The long-poll wait is
//! therefore kept below half the allowed staleness, so that a healthy follower always refreshes
//! its view before it counts as stale; a follower that cannot reach the authority keeps the last
//! good view and retries with backoff, and the verifier starts refusing once the view is too old.
//!
//! [`RevocationSet`]: mandate_core::revocation::RevocationSet

use std::sync::Weak;
use std::time::Duration;

use mandate_core::revocation::RevocationEntry;
use serde::Deserialize;

use crate::fetch::get_json;
use crate::{Inner, VerifierError};

/// The feed's path, relative to the issuer.
pub const FEED_PATH: &str = "/revocations/v1";

/// Longest long-poll wait asked for, in seconds (the authority holds at most 30).
pub const MAX_WAIT_SECS: u64 = 25;

/// First retry delay after a failed poll.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest retry delay: an authority that comes back is noticed within this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How much longer than the requested wait a poll may take before it is abandoned.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// Shortest pause between polls when the staleness limit is too short for a long poll, so a
/// misconfiguration cannot turn the follower into a busy loop against the authority.
const MIN_PAUSE: Duration = Duration::from_millis(50);

/// One answer of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeedAnswer {
    /// The feed position after these entries.
    pub cursor: i64,
    /// Entries newer than the `since` asked for, oldest first.
    pub entries: Vec<RevocationEntry>,
    /// Set when the authority could not hold this poll open (too many polls wait already): how
    /// long to wait before the next poll.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

/// Parses a feed answer to a request with `since`.
///
/// Every entry must be understood: an entry of an unknown kind fails the whole answer rather
/// than being skipped, because skipping it would silently accept what the authority revoked.
/// A cursor behind `since` means the feed went backwards (a restored or different database);
/// the answer is refused so that the view goes stale and the verifier fails closed loudly.
pub fn parse_feed(body: &[u8], since: i64) -> Result<FeedAnswer, VerifierError> {
    let answer: FeedAnswer = serde_json::from_slice(body)
        .map_err(|e| VerifierError::Json("revocation feed", e.to_string()))?;
    if answer.cursor < since {
        return Err(VerifierError::FeedBackwards {
            since,
            cursor: answer.cursor,
        });
    }
    Ok(answer)
}

/// The feed URL for one poll.
pub fn feed_url(issuer: &str, since: i64, wait_secs: u64) -> String {
    format!(
        "{}{FEED_PATH}?since={since}&wait={wait_secs}",
        issuer.trim_end_matches('/')
    )
}

/// How long each poll may wait at the authority, and how long to pause after an answer.
///
/// A poll that waits longer than the staleness limit would make a healthy view look stale, so
/// the wait is at most half the limit (whole seconds, at most [`MAX_WAIT_SECS`]). Below two
/// seconds no long poll fits, and the follower polls without waiting, a quarter-limit apart.
pub fn poll_plan(max_staleness: Duration) -> (u64, Duration) {
    let wait = (max_staleness.as_secs() / 2).min(MAX_WAIT_SECS);
    if wait > 0 {
        (wait, Duration::ZERO)
    } else {
        (0, (max_staleness / 4).max(MIN_PAUSE))
    }
}

/// The next retry delay after `current` failed.
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// One poll of the feed.
async fn poll(
    http: &reqwest::Client,
    issuer: &str,
    since: i64,
    wait_secs: u64,
) -> Result<FeedAnswer, VerifierError> {
    let url = feed_url(issuer, since, wait_secs);
    let timeout = Duration::from_secs(wait_secs) + TIMEOUT_MARGIN;
    let body = get_json(http, &url, timeout).await?;
    parse_feed(&body, since)
}

/// The follower's knowledge of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No answer yet.
    Starting,
    /// The last poll was answered.
    Up,
    /// The last poll failed.
    Down,
}

/// Polls forever, until every [`crate::Verifier`] sharing `inner` is dropped.
pub(crate) async fn follow(inner: Weak<Inner>) {
    let mut backoff = BACKOFF_MIN;
    let mut link = Link::Starting;
    loop {
        let Some(v) = inner.upgrade() else {
            return;
        };
        let (mut wait, pause) = poll_plan(v.cfg.max_staleness);
        // Until a first answer, and again after a failure, the view is unconfirmed (the verifier
        // may be refusing everything), so ask for an immediate answer instead of a long wait.
        if link != Link::Up {
            wait = 0;
        }
        let since = v.revocation_cursor();
        let delay = match poll(&v.http, &v.cfg.issuer, since, wait).await {
            Ok(answer) => {
                if link == Link::Down {
                    tracing::info!(cursor = answer.cursor, "revocation feed reachable again");
                }
                if !answer.entries.is_empty() {
                    tracing::debug!(
                        count = answer.entries.len(),
                        cursor = answer.cursor,
                        "applying revocations"
                    );
                }
                v.apply_feed(&answer.entries);
                link = Link::Up;
                backoff = BACKOFF_MIN;
                // An authority that could not hold the poll says when to ask again (capped, so a
                // hostile answer cannot make the view stale).
                let asked = Duration::from_millis(answer.retry_after_ms.unwrap_or(0))
                    .min(v.cfg.max_staleness / 4);
                pause.max(asked)
            }
            Err(e) => {
                // Only the first failure of a streak is a warning; the retries are expected.
                if link == Link::Down {
                    tracing::debug!(error = %e, "revocation feed still unreachable");
                } else {
                    tracing::warn!(error = %e, "revocation feed unreachable; keeping the last view");
                }
                link = Link::Down;
                let d = backoff;
                backoff = next_backoff(backoff);
                d
            }
        };
        // The verifier is not kept alive while sleeping, so dropping it ends the loop promptly.
        drop(v);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use mandate_core::revocation::RevokedKind;

    use super::*;

    #[test]
    fn a_feed_answer_parses_into_core_entries() {
        let body = br#"{"cursor": 7, "entries": [
            {"seq": 6, "kind": "jti", "value": "j1", "revoked_at": 100},
            {"seq": 7, "kind": "principal", "value": "agent:coder", "revoked_at": 101}
        ]}"#;
        let a = parse_feed(body, 5).unwrap();
        assert_eq!(a.cursor, 7);
        assert_eq!(a.entries.len(), 2);
        assert_eq!(a.entries[1].kind, RevokedKind::Principal);
        assert_eq!(a.entries[1].value, "agent:coder");
        let empty = parse_feed(br#"{"cursor": 7, "entries": []}"#, 7).unwrap();
        assert!(empty.entries.is_empty());
    }

    #[test]
    fn unknown_kinds_malformed_answers_and_a_feed_going_backwards_are_errors() {
        let unknown = br#"{"cursor": 1, "entries": [{"seq": 1, "kind": "session", "value": "s", "revoked_at": 1}]}"#;
        assert!(matches!(
            parse_feed(unknown, 0),
            Err(VerifierError::Json(..))
        ));
        for bad in [&b"{}"[..], b"[]", b"{\"cursor\": 1}", b"<html>"] {
            assert!(parse_feed(bad, 0).is_err());
        }
        assert!(matches!(
            parse_feed(br#"{"cursor": 3, "entries": []}"#, 9),
            Err(VerifierError::FeedBackwards {
                since: 9,
                cursor: 3
            })
        ));
    }

    #[test]
    fn the_long_poll_always_answers_well_within_the_staleness_limit() {
        assert_eq!(poll_plan(Duration::from_secs(60)), (25, Duration::ZERO));
        assert_eq!(poll_plan(Duration::from_secs(3)), (1, Duration::ZERO));
        assert_eq!(poll_plan(Duration::from_secs(30)), (15, Duration::ZERO));
        assert_eq!(
            poll_plan(Duration::from_secs(1)),
            (0, Duration::from_millis(250))
        );
        assert_eq!(poll_plan(Duration::ZERO), (0, MIN_PAUSE));
        for secs in 0..100 {
            let limit = Duration::from_secs(secs);
            let (wait, _) = poll_plan(limit);
            assert!(Duration::from_secs(wait) * 2 <= limit);
        }
    }

    #[test]
    fn backoff_doubles_from_100_ms_up_to_2_s() {
        let mut d = BACKOFF_MIN;
        let mut seen = vec![d];
        for _ in 0..6 {
            d = next_backoff(d);
            seen.push(d);
        }
        let ms: Vec<u128> = seen.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn the_feed_url_is_relative_to_the_issuer() {
        assert_eq!(
            feed_url("http://127.0.0.1:8080/", 4, 25),
            "http://127.0.0.1:8080/revocations/v1?since=4&wait=25"
        );
    }
}
