-- Ids are lower-case hyphenated UUIDs; a binary collation compares them
-- byte for byte. MariaDB's JSON is LONGTEXT with a JSON_VALID check.
CREATE TABLE events (
    account_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sequence_number BIGINT NOT NULL,
    transaction_id  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event_type      VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payload         JSON NOT NULL,
    recorded_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (account_id, sequence_number),
    CONSTRAINT events_sequence_positive CHECK (sequence_number >= 1)
) ENGINE = InnoDB;

CREATE TABLE applied_transactions (
    account_id     CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    transaction_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fingerprint    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (account_id, transaction_id)
) ENGINE = InnoDB;

CREATE TABLE snapshots (
    account_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sequence_number BIGINT NOT NULL,
    state           JSON NOT NULL,
    PRIMARY KEY (account_id, sequence_number),
    CONSTRAINT snapshots_sequence_positive CHECK (sequence_number >= 1)
) ENGINE = InnoDB;
