-- The ledger, as SQLite has it (store/mod.rs), with what many workers need besides:
-- leases with an owner and a deadline on the database's clock, a heartbeat per run, and each
-- document whole (JSON) so a worker on another machine can work on it without its file.
CREATE TABLE documents (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER NOT NULL,
    added_at BIGINT NOT NULL, body TEXT
);
CREATE TABLE pages (
    document_id TEXT NOT NULL REFERENCES documents(id), number INTEGER NOT NULL,
    quality TEXT NOT NULL, chars BIGINT NOT NULL, failure TEXT, text TEXT NOT NULL,
    PRIMARY KEY (document_id, number)
);
CREATE TABLE sections (
    document_id TEXT NOT NULL REFERENCES documents(id), id INTEGER NOT NULL, title TEXT NOT NULL,
    level INTEGER NOT NULL, first_page INTEGER NOT NULL, last_page INTEGER NOT NULL,
    PRIMARY KEY (document_id, id)
);
CREATE TABLE units (
    key TEXT PRIMARY KEY, document_id TEXT NOT NULL REFERENCES documents(id), task TEXT NOT NULL,
    target TEXT NOT NULL, prompt_version TEXT NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, reason TEXT, updated_at BIGINT NOT NULL,
    retry BOOLEAN NOT NULL DEFAULT false,
    lease_owner TEXT, lease_until TIMESTAMPTZ
);
CREATE INDEX units_status ON units (status, task);
CREATE INDEX units_lease_owner ON units (lease_owner) WHERE status = 'leased';
CREATE TABLE results (
    unit_key TEXT PRIMARY KEY REFERENCES units(key), result TEXT NOT NULL, request_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE requests (
    id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, endpoint TEXT NOT NULL, task TEXT NOT NULL,
    prompt_version TEXT NOT NULL, prefix_tokens BIGINT, unit_keys TEXT NOT NULL,
    retries INTEGER NOT NULL DEFAULT 0, retried_errors TEXT,
    status TEXT NOT NULL CHECK (status IN ('sent', 'ok', 'failed', 'interrupted')),
    error_class TEXT, error TEXT, prompt_tokens BIGINT, cached_tokens BIGINT,
    completion_tokens BIGINT, cost_pico BIGINT, timeline TEXT, started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX requests_started_at ON requests (started_at);
CREATE INDEX requests_open ON requests (run_id) WHERE status = 'sent';
CREATE TABLE runs (
    id TEXT PRIMARY KEY, started_at BIGINT NOT NULL, finished_at BIGINT, endpoints TEXT NOT NULL,
    summary TEXT, heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
