-- An endpoint's requests/min and tokens/min shared by every worker: one row, reserved from in
-- one statement (levels may go negative: a debt the reserving worker waits out).
CREATE TABLE rate_budgets (
    name TEXT PRIMARY KEY, req_level DOUBLE PRECISION NOT NULL,
    tok_level DOUBLE PRECISION NOT NULL, at TIMESTAMPTZ NOT NULL
);
