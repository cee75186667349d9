//! Token usage over each store: SQLite always, PostgreSQL when
//! `A2A_TEST_DATABASE_URL` names a server (see `tests/pg.sh`; without it
//! those tests print a notice and pass, except under `CI`).

mod common;

use common::{Db, postgres_url, usage};

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::usage::$name(&super::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = super::postgres_url() else { return };
                    super::usage::$name(&super::Db::Postgres(url)).await;
                }
            )*
        }
    };
}

on_both_stores!(
    usage_sync_is_idempotent,
    usage_totals_respect_windows_and_patterns,
    usage_sync_refuses_bad_batches,
    usage_reads_are_the_callers_own,
    usage_overrides_round_trip,
    usage_housekeeping,
    usage_metering_off,
    usage_export_delivers_cloudevents,
    usage_outbox_is_bounded,
);
