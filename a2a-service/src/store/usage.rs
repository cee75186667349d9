//! Token usage: the records the gateways report (inserted once by id, so a
//! batch sent again counts once, whichever replica takes it), the sums the
//! budgets read back, the runtime overrides, and the CloudEvents outbox.

use attach_contract::budget::Scope;
use attach_contract::pattern::Pattern;
use attach_contract::usage::Record;
use serde_json::Value;
use sqlx::Row;

use super::pool::Store;
use super::sql::{Arg, Sql, StoreResult, decode_json, json_text};

/// What a sum counts: `user`'s tokens since `since_ms` for the models of
/// `scope`, of every gateway but `except_gateway` when it is given.
#[derive(Clone, Debug)]
pub struct UsageQuery<'a> {
    pub user: &'a str,
    pub since_ms: i64,
    pub scope: &'a Scope,
    pub except_gateway: Option<&'a str>,
}

/// One model's share of a user's usage in a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Calls that reached the engine (refusals are not counted).
    pub requests: u64,
}

/// A runtime override as stored: its windows and models in the policy's
/// JSON form (`Override::fields_value`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredOverride {
    pub user: String,
    pub limits: Value,
    pub updated_ms: i64,
}

/// An event for the outbox: its id (unique) and its JSON text.
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    pub id: String,
    pub body: String,
}

/// The outbox events of a new record (the export's, when it runs).
pub type ExportEvents = dyn Fn(&Record) -> Vec<OutboxEvent> + Sync;

/// An event taken from the outbox for a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    pub seq: i64,
    pub body: String,
}

/// A count as the database keeps it (BIGINT); past it, the most it holds.
fn count_arg(n: u64) -> Arg {
    Arg::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn count_column(row: &sqlx::any::AnyRow, column: &str) -> StoreResult<u64> {
    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
}

/// `LIKE` pattern text for values that start with `prefix`: its `%`, `_`
/// and `\` stand for themselves (with `ESCAPE '\'`).
pub(super) fn like_prefix(prefix: &str) -> String {
    let mut text = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('%');
    text
}

/// The condition on `model` of a scope. SQLite's `LIKE` ignores ASCII
/// case, PostgreSQL's does not: the `substr` comparison makes both exact,
/// as the pattern rule is. A scope that is no pattern matches nothing.
fn push_scope(sql: &mut Sql, scope: &Scope) {
    let Scope::Model(text) = scope else { return };
    match Pattern::parse(text) {
        Ok(Pattern::Exact(model)) => {
            sql.push(" AND model = ?", Arg::Text(model));
        }
        Ok(Pattern::Prefix(prefix)) => {
            sql.push(
                " AND model LIKE ? ESCAPE '\\'",
                Arg::Text(like_prefix(&prefix)),
            );
            let length = prefix.chars().count();
            sql.push(
                &format!(" AND substr(model, 1, {length}) = ?"),
                Arg::Text(prefix),
            );
        }
        Err(_) => {
            sql.raw(" AND 1 = 0");
        }
    }
}

fn insert_record_sql(gateway: &str, r: &Record) -> Sql {
    let mut sql = Sql::new(
        "INSERT INTO usage_records (id, gateway, user_id, model, route, at_ms, tokens_in, tokens_out, estimated, outcome) VALUES (",
    );
    sql.push("?", Arg::Text(r.id.clone()));
    sql.push(", ?", Arg::Text(gateway.into()));
    sql.push(", ?", Arg::Text(r.user.clone()));
    sql.push(", ?", Arg::Text(r.model.clone()));
    sql.push(", ?", Arg::Text(r.route.clone()));
    sql.push(", ?", count_arg(r.at_ms));
    sql.push(", ?", count_arg(r.tokens_in));
    sql.push(", ?", count_arg(r.tokens_out));
    sql.push(", ?", Arg::Int(i64::from(r.estimated)));
    sql.push(
        ", ?) ON CONFLICT (id) DO NOTHING",
        Arg::Text(r.outcome.as_str().into()),
    );
    sql
}

fn insert_outbox_sql(e: &OutboxEvent, next_ms: i64) -> Sql {
    let mut sql = Sql::new("INSERT INTO usage_outbox (event_id, body, next_ms) VALUES (");
    sql.push("?", Arg::Text(e.id.clone()));
    sql.push(", ?", Arg::Text(e.body.clone()));
    sql.push(", ?) ON CONFLICT (event_id) DO NOTHING", Arg::Int(next_ms));
    sql
}

/// `seq IN (…)` for the given rows, as parameters.
fn push_seq_list(sql: &mut Sql, seqs: &[i64]) {
    sql.raw("seq IN (");
    for (i, seq) in seqs.iter().enumerate() {
        sql.push(if i == 0 { "?" } else { ", ?" }, Arg::Int(*seq));
    }
    sql.raw(")");
}

impl Store {
    /// Stores `gateway`'s records in one transaction, each unless its id
    /// is there already, and the outbox events `export` makes of each new
    /// one with it. Returns, in order, whether each record was new.
    pub async fn insert_usage(
        &self,
        gateway: &str,
        records: &[Record],
        export: Option<&ExportEvents>,
        now_ms: i64,
    ) -> StoreResult<Vec<bool>> {
        // In id order: transactions of replicas taking overlapping batches
        // wait on each other's rows in one order, and never deadlock.
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|a, b| records[*a].id.cmp(&records[*b].id));
        let mut tx = self.pool.begin().await?;
        let mut fresh = vec![false; records.len()];
        for i in order {
            let r = &records[i];
            let new = insert_record_sql(gateway, r)
                .query()
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if let (true, Some(export)) = (new, export) {
                for event in export(r) {
                    insert_outbox_sql(&event, now_ms)
                        .query()
                        .execute(&mut *tx)
                        .await?;
                }
            }
            fresh[i] = new;
        }
        tx.commit().await?;
        Ok(fresh)
    }

    /// The tokens (in and out) each query counts, in order, read over one
    /// connection.
    pub async fn usage_tokens(&self, queries: &[UsageQuery<'_>]) -> StoreResult<Vec<u64>> {
        let mut conn = self.pool.acquire().await?;
        let mut sums = Vec::with_capacity(queries.len());
        for q in queries {
            let mut sql = Sql::new(
                "SELECT CAST(COALESCE(SUM(tokens_in + tokens_out), 0) AS BIGINT) AS n FROM usage_records WHERE ",
            );
            sql.push("user_id = ?", Arg::Text(q.user.into()));
            sql.push(" AND at_ms >= ?", Arg::Int(q.since_ms));
            if let Some(gateway) = q.except_gateway {
                sql.push(" AND gateway <> ?", Arg::Text(gateway.into()));
            }
            push_scope(&mut sql, q.scope);
            let row = sql.query().fetch_one(&mut *conn).await?;
            sums.push(count_column(&row, "n")?);
        }
        Ok(sums)
    }

    /// `user`'s usage since `since_ms` per model (of every gateway), by
    /// model name.
    pub async fn usage_by_model(&self, user: &str, since_ms: i64) -> StoreResult<Vec<ModelUsage>> {
        let mut sql = Sql::new(
            "SELECT model, CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, \
             CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, COUNT(*) AS requests \
             FROM usage_records WHERE ",
        );
        sql.push("user_id = ?", Arg::Text(user.into()));
        sql.push(" AND at_ms >= ?", Arg::Int(since_ms));
        sql.raw(" AND outcome <> 'refused' GROUP BY model ORDER BY model");
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(ModelUsage {
                    model: row.try_get("model")?,
                    tokens_in: count_column(row, "tokens_in")?,
                    tokens_out: count_column(row, "tokens_out")?,
                    requests: count_column(row, "requests")?,
                })
            })
            .collect()
    }

    /// Removes usage records older than `cutoff_ms`.
    pub async fn delete_usage_before(&self, cutoff_ms: i64) -> StoreResult<u64> {
        let mut sql = Sql::new("DELETE FROM usage_records WHERE ");
        sql.push("at_ms < ?", Arg::Int(cutoff_ms));
        Ok(sql.query().execute(&self.pool).await?.rows_affected())
    }

    /// Sets `user`'s override, replacing any.
    pub async fn put_override(&self, o: &StoredOverride) -> StoreResult<()> {
        let mut sql =
            Sql::new("INSERT INTO usage_overrides (user_id, limits, updated_ms) VALUES (");
        sql.push("?", Arg::Text(o.user.clone()));
        sql.push(", ?", Arg::Text(json_text(&o.limits)));
        sql.push(", ?)", Arg::Int(o.updated_ms));
        sql.raw(
            " ON CONFLICT (user_id) DO UPDATE SET limits = excluded.limits, updated_ms = excluded.updated_ms",
        );
        sql.query().execute(&self.pool).await?;
        Ok(())
    }

    /// Every override, by user.
    pub async fn list_overrides(&self) -> StoreResult<Vec<StoredOverride>> {
        let rows =
            sqlx::query("SELECT user_id, limits, updated_ms FROM usage_overrides ORDER BY user_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredOverride {
                    user: row.try_get("user_id")?,
                    limits: decode_json("limits", &row.try_get::<String, _>("limits")?)?,
                    updated_ms: row.try_get("updated_ms")?,
                })
            })
            .collect()
    }

    /// Removes `user`'s override; whether there was one.
    pub async fn delete_override(&self, user: &str) -> StoreResult<bool> {
        let mut sql = Sql::new("DELETE FROM usage_overrides WHERE ");
        sql.push("user_id = ?", Arg::Text(user.into()));
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Takes up to `limit` of the oldest events due at `now_ms`, leased
    /// until `lease_until_ms`: no other delivery (of this replica or
    /// another) takes them meanwhile, since the update checks each row is
    /// still due.
    pub async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>> {
        let mut sql = Sql::new("UPDATE usage_outbox SET ");
        sql.push("next_ms = ?", Arg::Int(lease_until_ms));
        sql.push(" WHERE next_ms <= ?", Arg::Int(now_ms));
        sql.push(
            " AND seq IN (SELECT seq FROM usage_outbox WHERE next_ms <= ?",
            Arg::Int(now_ms),
        );
        sql.push(
            " ORDER BY seq LIMIT ?) RETURNING seq, body",
            Arg::Int(limit),
        );
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut items = rows
            .iter()
            .map(|row| {
                Ok(OutboxItem {
                    seq: row.try_get("seq")?,
                    body: row.try_get("body")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        items.sort_by_key(|i| i.seq);
        Ok(items)
    }

    /// Removes delivered events.
    pub async fn delete_outbox(&self, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new("DELETE FROM usage_outbox WHERE ");
        push_seq_list(&mut sql, seqs);
        sql.query().execute(&self.pool).await?;
        Ok(())
    }

    /// Makes events due again at `next_ms` (a delivery that failed).
    pub async fn release_outbox(&self, seqs: &[i64], next_ms: i64) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new("UPDATE usage_outbox SET ");
        sql.push("next_ms = ? WHERE ", Arg::Int(next_ms));
        push_seq_list(&mut sql, seqs);
        sql.query().execute(&self.pool).await?;
        Ok(())
    }

    /// Drops the oldest events past the newest `keep`; how many.
    pub async fn trim_outbox(&self, keep: u64) -> StoreResult<u64> {
        let mut sql = Sql::new("DELETE FROM usage_outbox WHERE ");
        sql.push(
            "seq < (SELECT seq FROM usage_outbox ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            count_arg(keep.saturating_sub(1)),
        );
        Ok(sql.query().execute(&self.pool).await?.rows_affected())
    }

    /// How many events wait in the outbox.
    pub async fn outbox_len(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM usage_outbox")
            .fetch_one(&self.pool)
            .await?;
        count_column(&row, "n")
    }
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_patterns_keep_wildcards_literal() {
        assert_eq!(like_prefix("llama3"), "llama3%");
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
    }
}
