-- A2A tasks. JSON columns are TEXT so both backends share one schema;
-- instants are unix milliseconds.
CREATE TABLE a2a_tasks (
    id             TEXT PRIMARY KEY,
    context_id     TEXT NOT NULL,
    owner          TEXT NOT NULL,
    session        TEXT NOT NULL,
    agent          TEXT NOT NULL,
    state          TEXT NOT NULL,
    input          TEXT NOT NULL,
    history        TEXT NOT NULL,
    artifacts      TEXT NOT NULL,
    status_message TEXT,
    result         TEXT,
    error          TEXT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    deadline_ms    BIGINT NOT NULL
);
CREATE INDEX a2a_tasks_owner_agent ON a2a_tasks (owner, agent, created_ms);
CREATE INDEX a2a_tasks_state_deadline ON a2a_tasks (state, deadline_ms);
CREATE INDEX a2a_tasks_updated ON a2a_tasks (updated_ms);

-- Memory documents: written through /mem/events, mirrored by the filter
-- through /mem/ingest, and by the service for every task.
CREATE TABLE memory_events (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    session    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    role       TEXT,
    task_id    TEXT,
    content    TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX memory_events_owner ON memory_events (owner, created_ms);
CREATE INDEX memory_events_created ON memory_events (created_ms);
