//! What a client is told about its budget: the rate-limit headers on every
//! answer of a counted route (OpenAI's names and duration form), and the
//! refusals (OpenAI's error shape), which name the window and nothing of
//! the gateway's workings.

use super::ledger::{Refusal, Report};
use crate::reply::LocalReply;
use attach_contract::budget::{LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER, duration_text};
use serde_json::json;

/// The three `x-ratelimit-*-tokens` headers of a limit.
pub fn headers(report: &Report) -> [(&'static str, String); 3] {
    [
        (LIMIT_HEADER, report.limit.to_string()),
        (REMAINING_HEADER, report.remaining.to_string()),
        (RESET_HEADER, duration_text(report.reset_ms)),
    ]
}

/// The answer to a request its budget refused: the refusing window's
/// status (429, or 403 for a quota configured so), `Retry-After` in whole
/// seconds (at least 1) when the request can ever fit, the headers, and
/// an error that says which window refused.
pub fn refused(refusal: &Refusal) -> LocalReply {
    let window = refusal.limit.window;
    let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(5);
    let message = match refusal.retry_after_ms {
        Some(ms) => {
            let seconds = ms.div_ceil(1_000).max(1);
            headers.push(("retry-after", seconds.to_string()));
            format!(
                "token budget exceeded: {} tokens per {} s; retry in {seconds} s",
                window.tokens, window.seconds
            )
        }
        None => format!(
            "the request asks for more tokens than the {} s limit of {} allows",
            window.seconds, window.tokens
        ),
    };
    headers.extend(self::headers(&refusal.report));
    LocalReply::json(
        u32::from(window.status),
        headers,
        json!({"error": {"message": message, "type": "tokens", "code": "rate_limit_exceeded"}}),
    )
}

/// 413 for a request body larger than the budget reads to estimate it.
pub fn too_large(max: usize) -> LocalReply {
    LocalReply::json(
        413,
        vec![],
        json!({"error": {
            "message": format!("the request body is larger than {max} bytes"),
            "type": "invalid_request_error",
            "code": "request_too_large",
        }}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::budget::{Limit, Scope, Window};

    fn refusal(status: u16, retry_after_ms: Option<u64>) -> Refusal {
        Refusal {
            limit: Limit {
                scope: Scope::All,
                window: Window {
                    seconds: 60,
                    tokens: 60_000,
                    status,
                },
            },
            retry_after_ms,
            report: Report {
                limit: 60_000,
                remaining: 120,
                reset_ms: 90_000,
            },
        }
    }

    fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn body(reply: &LocalReply) -> serde_json::Value {
        serde_json::from_str(&reply.body).unwrap()
    }

    #[test]
    fn a_refusal_says_when_to_retry_in_whole_seconds() {
        for (ms, seconds) in [(11_001, "12"), (12_000, "12"), (1, "1"), (0, "1")] {
            let reply = refused(&refusal(429, Some(ms)));
            assert_eq!(reply.status, 429);
            assert_eq!(header(&reply, "retry-after"), Some(seconds), "{ms}");
            let message = body(&reply)["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(
                message,
                format!("token budget exceeded: 60000 tokens per 60 s; retry in {seconds} s")
            );
        }
        let reply = refused(&refusal(429, Some(12_000)));
        assert_eq!(header(&reply, LIMIT_HEADER), Some("60000"));
        assert_eq!(header(&reply, REMAINING_HEADER), Some("120"));
        assert_eq!(header(&reply, RESET_HEADER), Some("1m30s"));
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        let error = &body(&reply)["error"];
        assert_eq!(error["type"], "tokens");
        assert_eq!(error["code"], "rate_limit_exceeded");
    }

    #[test]
    fn a_request_that_can_never_fit_has_no_retry_after() {
        let reply = refused(&refusal(429, None));
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply, "retry-after"), None);
        assert_eq!(
            body(&reply)["error"]["message"],
            "the request asks for more tokens than the 60 s limit of 60000 allows"
        );
    }

    #[test]
    fn a_quota_may_answer_403() {
        assert_eq!(refused(&refusal(403, Some(5_000))).status, 403);
    }

    #[test]
    fn headers_use_the_duration_form() {
        let h = headers(&Report {
            limit: 10,
            remaining: 0,
            reset_ms: 250,
        });
        assert_eq!(
            h,
            [
                (LIMIT_HEADER, "10".to_string()),
                (REMAINING_HEADER, "0".to_string()),
                (RESET_HEADER, "250ms".to_string()),
            ]
        );
    }

    #[test]
    fn too_large_is_413_json() {
        let reply = too_large(1_048_576);
        assert_eq!(reply.status, 413);
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        assert!(
            body(&reply)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1048576 bytes")
        );
    }
}
