-- The feed: every event gets a store-wide position when its commit commits.
-- New events take `MAX(position) + 1` onwards under SQLite's single write
-- lock (see src/store/sqlite.rs); here the events stored before get theirs.
--
-- Stored events carry no commit order, only each account's sequence order
-- and the clock, which may have stepped back. So the order is computed: a
-- commit is one event, or both legs of a transfer (same transactionId and
-- time, each naming the other account); each commit gets a clock value that
-- is at least its own time and greater than that of the commit before it on
-- every account it touches (a Lamport clock over the accounts' streams).
-- SQLite has no loops, so the relaxation runs a fixed number of rounds —
-- each round carries a correction across one more transfer, far more than a
-- clock step back needs — and the migration fails rather than store an
-- order that breaks an account's sequence or splits a transfer.

CREATE TEMPORARY TABLE legacy_order AS
SELECT account_id, sequence_number,
       transaction_id AS commit_transaction,
       recorded_at_ms AS commit_time,
       MIN(account_id, COALESCE(counterpart, account_id)) AS commit_low,
       MAX(account_id, COALESCE(counterpart, account_id)) AS commit_high,
       CASE WHEN counterpart IS NULL THEN sequence_number ELSE 0 END AS commit_sequence,
       -- Milliseconds scaled, so that the +1 steps between commits stay
       -- within the same millisecond in all but extreme cases.
       MIN(MAX(recorded_at_ms, -4000000000000000), 4000000000000000) * 1000 AS clock
FROM (
    SELECT account_id, sequence_number, transaction_id, recorded_at_ms,
           COALESCE(json_extract(payload, '$.transferTo'),
                    json_extract(payload, '$.transferFrom')) AS counterpart
    FROM events
);

CREATE UNIQUE INDEX temp.legacy_order_key ON legacy_order (account_id, sequence_number);
CREATE INDEX temp.legacy_order_commit
    ON legacy_order (commit_transaction, commit_time, commit_low, commit_high, commit_sequence);

-- One round, eight times over: along each account at least one more than
-- the event before, then across a commit the larger value for both legs.
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;
UPDATE legacy_order SET clock = along.clock FROM (
    SELECT account_id, sequence_number, sequence_number + MAX(clock - sequence_number)
        OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock FROM legacy_order
) AS along WHERE legacy_order.account_id = along.account_id
    AND legacy_order.sequence_number = along.sequence_number AND legacy_order.clock <> along.clock;
UPDATE legacy_order SET clock = across.clock FROM (
    SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
           MAX(clock) AS clock FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
) AS across WHERE legacy_order.commit_transaction = across.commit_transaction
    AND legacy_order.commit_time = across.commit_time AND legacy_order.commit_low = across.commit_low
    AND legacy_order.commit_high = across.commit_high
    AND legacy_order.commit_sequence = across.commit_sequence AND legacy_order.clock <> across.clock;

-- Not settled after eight rounds: stop the migration (the CHECK fails)
-- rather than store an order that breaks an account's sequence or splits a
-- transfer.
CREATE TEMPORARY TABLE legacy_order_settled (settled INTEGER NOT NULL CHECK (settled = 1));
INSERT INTO legacy_order_settled
SELECT NOT EXISTS (
    SELECT 1 FROM (
        SELECT clock, LAG(clock) OVER (PARTITION BY account_id ORDER BY sequence_number) AS before
        FROM legacy_order
    ) WHERE clock <= before
) AND NOT EXISTS (
    SELECT 1 FROM legacy_order
    GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
    HAVING MIN(clock) <> MAX(clock)
);

-- SQLite adds no NOT NULL column to a filled table: the table is rebuilt.
CREATE TABLE events_with_positions (
    account_id      TEXT    NOT NULL,
    sequence_number INTEGER NOT NULL CHECK (sequence_number >= 1),
    transaction_id  TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    recorded_at_ms  INTEGER NOT NULL,
    position        INTEGER NOT NULL CHECK (position >= 1),
    PRIMARY KEY (account_id, sequence_number)
) WITHOUT ROWID;

INSERT INTO events_with_positions
    (account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms, position)
SELECT e.account_id, e.sequence_number, e.transaction_id, e.event_type, e.payload,
       e.recorded_at_ms, ordered.position
FROM events e JOIN (
    SELECT account_id, sequence_number,
           ROW_NUMBER() OVER (ORDER BY clock, commit_transaction, commit_time, commit_low,
                                       commit_high, commit_sequence, account_id) AS position
    FROM legacy_order
) AS ordered ON e.account_id = ordered.account_id AND e.sequence_number = ordered.sequence_number;

DROP TABLE events;
ALTER TABLE events_with_positions RENAME TO events;
CREATE UNIQUE INDEX events_position ON events (position);
DROP TABLE legacy_order;
DROP TABLE legacy_order_settled;

-- The largest recordedAt of the account's events up to the snapshot, for
-- point-in-time reads. NULL only for a snapshot written without it.
ALTER TABLE snapshots ADD COLUMN recorded_until_ms INTEGER;
UPDATE snapshots SET recorded_until_ms = (
    SELECT MAX(e.recorded_at_ms) FROM events e
    WHERE e.account_id = snapshots.account_id AND e.sequence_number <= snapshots.sequence_number
);
