-- The feed: every event gets a store-wide position when its commit commits.
-- New events take theirs from the one-row counter `event_positions` inside the
-- appending statement (see src/store/postgres.rs); here the events stored
-- before get theirs.
--
-- Stored events carry no commit order, only each account's sequence order
-- and the instances' clocks, which need not agree. So the order is computed:
-- a commit is one event, or both legs of a transfer (same transactionId and
-- time, each naming the other account); each commit gets a clock value that
-- is at least its own time and greater than that of the commit before it on
-- every account it touches (a Lamport clock over the accounts' streams,
-- relaxed until nothing changes). Ordering by it keeps each account's events
-- in sequence order and a transfer's legs adjacent, whatever the clocks said.

ALTER TABLE events ADD COLUMN position bigint;

CREATE TEMPORARY TABLE legacy_order ON COMMIT DROP AS
SELECT account_id, sequence_number,
       transaction_id AS commit_transaction,
       recorded_at_ms AS commit_time,
       -- The pair of a transfer's legs; the account itself otherwise.
       LEAST(account_id, COALESCE((payload->>'transferTo')::uuid,
                                  (payload->>'transferFrom')::uuid, account_id)) AS commit_low,
       GREATEST(account_id, COALESCE((payload->>'transferTo')::uuid,
                                     (payload->>'transferFrom')::uuid, account_id)) AS commit_high,
       CASE WHEN payload ? 'transferTo' OR payload ? 'transferFrom' THEN 0
            ELSE sequence_number END AS commit_sequence,
       -- Milliseconds scaled, so that the +1 steps between commits stay
       -- within the same millisecond in all but extreme cases.
       LEAST(GREATEST(recorded_at_ms, -4000000000000000), 4000000000000000)::numeric * 1000
           AS clock
FROM events;

CREATE INDEX ON legacy_order (account_id, sequence_number);
CREATE INDEX ON legacy_order (commit_transaction, commit_time, commit_low, commit_high,
                              commit_sequence);

DO $$
DECLARE
    changed bigint;
    rounds integer := 0;
BEGIN
    LOOP
        -- Along each account: at least one more than the event before.
        WITH along AS (
            SELECT account_id, sequence_number,
                   sequence_number + MAX(clock - sequence_number)
                       OVER (PARTITION BY account_id ORDER BY sequence_number) AS clock
            FROM legacy_order
        )
        UPDATE legacy_order o SET clock = along.clock
        FROM along
        WHERE o.account_id = along.account_id AND o.sequence_number = along.sequence_number
          AND o.clock <> along.clock;
        GET DIAGNOSTICS changed = ROW_COUNT;
        -- Across a commit: its legs share the larger value.
        WITH across AS (
            SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
                   MAX(clock) AS clock
            FROM legacy_order
            GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
            HAVING MIN(clock) <> MAX(clock)
        )
        UPDATE legacy_order o SET clock = across.clock
        FROM across
        WHERE o.commit_transaction = across.commit_transaction
          AND o.commit_time = across.commit_time
          AND o.commit_low = across.commit_low AND o.commit_high = across.commit_high
          AND o.commit_sequence = across.commit_sequence
          AND o.clock <> across.clock;
        EXIT WHEN changed = 0 AND NOT FOUND;
        rounds := rounds + 1;
        IF rounds > 10000 THEN
            RAISE EXCEPTION 'stored events have no order consistent with every account''s '
                            'sequence and every transfer''s legs';
        END IF;
    END LOOP;
END
$$;

UPDATE events e SET position = ordered.position
FROM (
    SELECT account_id, sequence_number,
           ROW_NUMBER() OVER (ORDER BY clock, commit_transaction, commit_time, commit_low,
                                       commit_high, commit_sequence, account_id) AS position
    FROM legacy_order
) AS ordered
WHERE e.account_id = ordered.account_id AND e.sequence_number = ordered.sequence_number;

ALTER TABLE events ALTER COLUMN position SET NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_position_positive CHECK (position >= 1);
CREATE UNIQUE INDEX events_position ON events (position);

-- The last position handed out. Appends lock this row from the moment they
-- take their range until COMMIT, so ranges become visible in order.
CREATE TABLE event_positions (
    id   smallint PRIMARY KEY CHECK (id = 1),
    last bigint   NOT NULL CHECK (last >= 0)
);
INSERT INTO event_positions (id, last) SELECT 1, COALESCE(MAX(position), 0) FROM events;

-- The largest recordedAt of the account's events up to the snapshot, for
-- point-in-time reads. NULL only for a snapshot written without it.
ALTER TABLE snapshots ADD COLUMN recorded_until_ms bigint;
UPDATE snapshots s SET recorded_until_ms = (
    SELECT MAX(e.recorded_at_ms) FROM events e
    WHERE e.account_id = s.account_id AND e.sequence_number <= s.sequence_number
);
