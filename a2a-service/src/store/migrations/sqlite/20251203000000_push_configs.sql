-- Webhooks registered for a task's push notifications. A config id is
-- unique within its task; the owner is the task's, and every query names it.
CREATE TABLE a2a_push_configs (
    id               TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    owner            TEXT NOT NULL,
    url              TEXT NOT NULL,
    token            TEXT,
    auth_scheme      TEXT,
    auth_credentials TEXT,
    protocol         TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    PRIMARY KEY (task_id, id)
);
