-- Token usage the gateways report (POST /usage/sync): one row per model
-- call, its id given by the gateway, so a batch sent twice counts once.
-- Read as "tokens of a user since an instant" (of every gateway, or of all
-- but the asking one), for all models, one model, or a prefix of models.
CREATE TABLE usage_records (
    id         TEXT PRIMARY KEY,
    gateway    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    model      TEXT NOT NULL,
    route      TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    tokens_in  BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    estimated  BIGINT NOT NULL,
    outcome    TEXT NOT NULL
);
CREATE INDEX usage_records_user_at ON usage_records (user_id, at_ms);
CREATE INDEX usage_records_user_model_at ON usage_records (user_id, model, at_ms);
CREATE INDEX usage_records_at ON usage_records (at_ms);

-- Limits an admin set for one user at run time; `limits` is the JSON of
-- the override's windows and models (the policy's form).
CREATE TABLE usage_overrides (
    user_id    TEXT PRIMARY KEY,
    limits     TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- CloudEvents waiting to be exported (USAGE_METERING=cloudevents), oldest
-- first; `next_ms` is when a delivery may take the row next (a delivery
-- leases its rows by moving it forward).
CREATE TABLE usage_outbox (
    seq      BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    body     TEXT NOT NULL,
    next_ms  BIGINT NOT NULL
);
CREATE INDEX usage_outbox_next ON usage_outbox (next_ms, seq);
