-- The feed: every event gets a store-wide position when its commit commits.
-- New events take theirs from the one-row counter `event_positions` inside the
-- appending transaction (see src/store/mysql.rs); here the events stored
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

ALTER TABLE events ADD COLUMN position BIGINT NULL;

CREATE TABLE legacy_order (
    account_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sequence_number    BIGINT NOT NULL,
    commit_transaction CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    commit_time        BIGINT NOT NULL,
    commit_low         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    commit_high        CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    commit_sequence    BIGINT NOT NULL,
    clock              BIGINT NOT NULL,
    PRIMARY KEY (account_id, sequence_number),
    KEY legacy_commit (commit_transaction, commit_time, commit_low, commit_high, commit_sequence)
) ENGINE = InnoDB;

CREATE TABLE legacy_clock (
    account_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sequence_number BIGINT NOT NULL,
    clock           BIGINT NOT NULL,
    PRIMARY KEY (account_id, sequence_number)
) ENGINE = InnoDB;

INSERT INTO legacy_order
SELECT account_id, sequence_number, transaction_id, recorded_at_ms,
       LEAST(account_id, COALESCE(counterpart, account_id)),
       GREATEST(account_id, COALESCE(counterpart, account_id)),
       CASE WHEN counterpart IS NULL THEN sequence_number ELSE 0 END,
       -- Milliseconds scaled, so that the +1 steps between commits stay
       -- within the same millisecond in all but extreme cases.
       LEAST(GREATEST(recorded_at_ms, -4000000000000000), 4000000000000000) * 1000
FROM (
    SELECT account_id, sequence_number, transaction_id, recorded_at_ms,
           CONVERT(COALESCE(JSON_VALUE(payload, '$.transferTo'),
                            JSON_VALUE(payload, '$.transferFrom')) USING ascii)
               COLLATE ascii_bin AS counterpart
    FROM events
) AS stored;

BEGIN NOT ATOMIC
    DECLARE changed BIGINT DEFAULT 1;
    DECLARE rounds INT DEFAULT 0;
    WHILE changed > 0 DO
        -- Along each account: at least one more than the event before.
        DELETE FROM legacy_clock;
        INSERT INTO legacy_clock
        SELECT account_id, sequence_number,
               sequence_number + MAX(clock - sequence_number)
                   OVER (PARTITION BY account_id ORDER BY sequence_number)
        FROM legacy_order;
        UPDATE legacy_order o JOIN legacy_clock c
            ON o.account_id = c.account_id AND o.sequence_number = c.sequence_number
        SET o.clock = c.clock WHERE o.clock <> c.clock;
        SET changed = ROW_COUNT();
        -- Across a commit: its legs share the larger value.
        DELETE FROM legacy_clock;
        INSERT INTO legacy_clock
        SELECT o.account_id, o.sequence_number, g.clock
        FROM legacy_order o JOIN (
            SELECT commit_transaction, commit_time, commit_low, commit_high, commit_sequence,
                   MAX(clock) AS clock
            FROM legacy_order
            GROUP BY commit_transaction, commit_time, commit_low, commit_high, commit_sequence
            HAVING MIN(clock) <> MAX(clock)
        ) AS g ON o.commit_transaction = g.commit_transaction AND o.commit_time = g.commit_time
              AND o.commit_low = g.commit_low AND o.commit_high = g.commit_high
              AND o.commit_sequence = g.commit_sequence;
        UPDATE legacy_order o JOIN legacy_clock c
            ON o.account_id = c.account_id AND o.sequence_number = c.sequence_number
        SET o.clock = c.clock WHERE o.clock <> c.clock;
        SET changed = changed + ROW_COUNT();
        SET rounds = rounds + 1;
        IF rounds > 1000 THEN
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT =
                'stored events have no order consistent with every account''s sequence and every transfer''s legs';
        END IF;
    END WHILE;
END;

UPDATE events e JOIN (
    SELECT account_id, sequence_number,
           ROW_NUMBER() OVER (ORDER BY clock, commit_transaction, commit_time, commit_low,
                                       commit_high, commit_sequence, account_id) AS position
    FROM legacy_order
) AS ordered ON e.account_id = ordered.account_id AND e.sequence_number = ordered.sequence_number
SET e.position = ordered.position;

DROP TABLE legacy_clock;
DROP TABLE legacy_order;

ALTER TABLE events
    MODIFY position BIGINT NOT NULL,
    ADD CONSTRAINT events_position_positive CHECK (position >= 1),
    ADD UNIQUE KEY events_position (position);

-- The last position handed out. Appends lock this row from the moment they
-- take their range until COMMIT, so ranges become visible in order.
CREATE TABLE event_positions (
    id   TINYINT NOT NULL PRIMARY KEY,
    last BIGINT NOT NULL,
    CONSTRAINT event_positions_one_row CHECK (id = 1)
) ENGINE = InnoDB;
INSERT INTO event_positions (id, last) SELECT 1, COALESCE(MAX(position), 0) FROM events;

-- The largest recordedAt of the account's events up to the snapshot, for
-- point-in-time reads. NULL only for a snapshot written without it.
ALTER TABLE snapshots ADD COLUMN recorded_until_ms BIGINT NULL;
UPDATE snapshots s SET recorded_until_ms = (
    SELECT MAX(e.recorded_at_ms) FROM events e
    WHERE e.account_id = s.account_id AND e.sequence_number <= s.sequence_number
);
