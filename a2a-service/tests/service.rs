//! Handler tests over SQLite.

mod common;

use common::{Db, scenarios};

macro_rules! sqlite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                scenarios::$name(&Db::Sqlite).await;
            }
        )*
    };
}

sqlite_tests!(
    blocking_v0_3,
    blocking_v1,
    input_required_then_continued,
    non_blocking_completes_in_background,
    cancel_running_task,
    failing_agents_fail_tasks,
    envelope_errors,
    isolation,
    assertion_checks,
    ingest_is_idempotent,
    ingest_for_others_needs_the_mirror_credential,
    seed_routes,
    body_limits_and_bad_bodies,
    memory_listing,
    housekeeping,
    cards_and_health,
    replicas_share_state,
    ingest_keeps_exchange_meta,
    ingest_keeps_tool_calls,
    ingest_refuses_bad_meta,
    ingest_refuses_timestamps_out_of_range,
    caller_writes_cannot_pass_for_the_mirror,
    weaviate_reads,
    weaviate_failures,
    weaviate_older_class,
    bearer_forwarding,
    extreme_timestamps_read_back,
    a_panicking_handler_fails_only_its_request,
    oversized_bodies_get_their_413_over_the_wire,
    huge_durations_do_not_wrap,
    page_tokens_past_any_count,
    direct_message_replies,
    protocol_errors_and_field_names,
    trailing_slash_and_unmatched_paths,
    extended_cards,
    signed_cards,
    delegated_handoffs,
    refused_handoffs_leave_nothing,
    memory_events_carry_the_actor,
);
