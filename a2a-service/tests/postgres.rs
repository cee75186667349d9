//! The same handler tests over PostgreSQL, against the server named by
//! `A2A_TEST_DATABASE_URL` (see `tests/pg.sh`). Without it the tests print
//! a notice and pass, except under `CI`, where they fail.

mod common;

use common::{Db, postgres_url, scenarios};

macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(url) = postgres_url() else { return };
                scenarios::$name(&Db::Postgres(url)).await;
            }
        )*
    };
}

postgres_tests!(
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
    extreme_timestamps_read_back,
    huge_durations_do_not_wrap,
    page_tokens_past_any_count,
    direct_message_replies,
    protocol_errors_and_field_names,
    trailing_slash_and_unmatched_paths,
    delegated_handoffs,
    refused_handoffs_leave_nothing,
    memory_events_carry_the_actor,
);
