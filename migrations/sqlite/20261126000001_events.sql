-- WITHOUT ROWID: rows are stored in primary-key order, so an account's
-- events are contiguous on disk and the key is the only index needed.
CREATE TABLE events (
    account_id      TEXT    NOT NULL,
    sequence_number INTEGER NOT NULL CHECK (sequence_number >= 1),
    transaction_id  TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    recorded_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (account_id, sequence_number)
) WITHOUT ROWID;

CREATE TABLE applied_transactions (
    account_id     TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    PRIMARY KEY (account_id, transaction_id)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    account_id      TEXT    NOT NULL,
    sequence_number INTEGER NOT NULL CHECK (sequence_number >= 1),
    state           TEXT    NOT NULL CHECK (json_valid(state)),
    PRIMARY KEY (account_id, sequence_number)
) WITHOUT ROWID;
