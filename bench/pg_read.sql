-- The bare read on the service's own schema (migrations/postgres): one of
-- the 64 accounts' latest snapshot and the events after it, in one
-- statement: the database's own cost of GET state, its ceiling.
\set account random(0, 63)
WITH snapshot AS (
    SELECT sequence_number, state FROM snapshots
    WHERE account_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:account::bigint), 12, '0'))::uuid
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT sequence_number, state FROM snapshot
UNION ALL
SELECT sequence_number, payload FROM events
WHERE account_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:account::bigint), 12, '0'))::uuid
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0);
