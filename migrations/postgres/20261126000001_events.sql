-- One row per event; the primary key is the optimistic-concurrency check:
-- two writers at the same (account, sequence number) cannot both commit.
CREATE TABLE events (
    account_id      uuid   NOT NULL,
    sequence_number bigint NOT NULL CHECK (sequence_number >= 1),
    transaction_id  uuid   NOT NULL,
    event_type      text   NOT NULL,
    payload         jsonb  NOT NULL,
    recorded_at_ms  bigint NOT NULL,
    PRIMARY KEY (account_id, sequence_number)
);

-- Exactly-once: a transactionId is applied to an account at most once, and
-- the fingerprint tells an identical replay from a reused id.
CREATE TABLE applied_transactions (
    account_id     uuid NOT NULL,
    transaction_id uuid NOT NULL,
    fingerprint    text NOT NULL,
    PRIMARY KEY (account_id, transaction_id)
);

-- The state as of a sequence number; loading reads the latest one and the
-- events after it.
CREATE TABLE snapshots (
    account_id      uuid   NOT NULL,
    sequence_number bigint NOT NULL CHECK (sequence_number >= 1),
    state           jsonb  NOT NULL,
    PRIMARY KEY (account_id, sequence_number)
);
