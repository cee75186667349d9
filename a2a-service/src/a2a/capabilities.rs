//! The optional capabilities the gateway's cards declare, and the answer to
//! a method that needs one of them.
//!
//! The gateway answers every task itself from its store and streams every
//! task (`task_streams.rs`), whether or not its agent streams; it sends push
//! notifications when the operator turns them on (`A2A_PUSH`, see
//! `push/settings.rs`), and serves an extended card for the agents the
//! operator wrote one for (`extended_card.rs`). A method
//! the protocol defines for one of those is still a known method: A2A 1.0
//! section 3.3.4 answers it with PushNotificationNotSupportedError or
//! UnsupportedOperationError, never with JSON-RPC's method-not-found.

use super::{ProtocolVersion, v0_3, v1};
use crate::error::AppError;

/// `capabilities.streaming` on every card.
pub const STREAMING: bool = true;

/// The error for `method` when it is one of `version`'s methods that need
/// a capability the card does not declare; `None` for any other method.
/// `push` is whether cards declare `pushNotifications`, `extended_card`
/// whether the agent's declares `extendedAgentCard`.
pub fn refusal(
    version: ProtocolVersion,
    method: &str,
    push: bool,
    extended_card: bool,
) -> Option<AppError> {
    let (push_methods, extended): (&[&str], &str) = match version {
        ProtocolVersion::V1_0 => (&v1::PUSH_CONFIG, v1::EXTENDED_CARD),
        ProtocolVersion::V0_3 => (&v0_3::PUSH_CONFIG, v0_3::EXTENDED_CARD),
    };
    if push_methods.contains(&method) && !push {
        return Some(AppError::PushNotificationNotSupported);
    }
    if method == extended && !extended_card {
        return Some(no_extended_card());
    }
    None
}

/// The answer to the extended-card method of an agent whose card does not
/// declare one.
pub fn no_extended_card() -> AppError {
    AppError::UnsupportedOperation("this agent has no extended card".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(version: ProtocolVersion, method: &str) -> Option<i64> {
        refusal(version, method, false, false).map(|e| e.rpc_error()["code"].as_i64().unwrap())
    }

    #[test]
    fn undeclared_capabilities() {
        use ProtocolVersion::*;
        // Streaming is always declared.
        assert_eq!(code(V1_0, "SendStreamingMessage"), None);
        assert_eq!(code(V1_0, "SubscribeToTask"), None);
        assert_eq!(code(V1_0, "GetExtendedAgentCard"), Some(-32004));
        assert_eq!(code(V1_0, "CreateTaskPushNotificationConfig"), Some(-32003));
        assert_eq!(code(V1_0, "ListTaskPushNotificationConfigs"), Some(-32003));
        assert_eq!(code(V0_3, "message/stream"), None);
        assert_eq!(
            code(V0_3, "agent/getAuthenticatedExtendedCard"),
            Some(-32004)
        );
        assert_eq!(code(V0_3, "tasks/pushNotificationConfig/set"), Some(-32003));
        // Another version's names, and names no version defines, are not refused here.
        assert_eq!(code(V0_3, "GetExtendedAgentCard"), None);
        assert_eq!(code(V1_0, "agent/getAuthenticatedExtendedCard"), None);
        assert_eq!(code(V1_0, "GetTask"), None);
    }

    #[test]
    fn push_methods_follow_the_setting() {
        use ProtocolVersion::*;
        assert!(refusal(V1_0, "CreateTaskPushNotificationConfig", true, false).is_none());
        assert!(refusal(V0_3, "tasks/pushNotificationConfig/list", true, false).is_none());
        assert!(refusal(V1_0, "GetExtendedAgentCard", true, false).is_some());
    }

    #[test]
    fn extended_card_methods_follow_the_agent() {
        use ProtocolVersion::*;
        assert!(refusal(V1_0, "GetExtendedAgentCard", false, true).is_none());
        assert!(refusal(V0_3, "agent/getAuthenticatedExtendedCard", false, true).is_none());
        assert!(refusal(V1_0, "GetTaskPushNotificationConfig", false, true).is_some());
    }
}
