-- The bare append on the service's own schema (migrations/postgres), as a
-- client of PostgreSQL would write it by hand: read the account's head and
-- write the next event, its feed position and its idempotency record, in
-- one transaction. Each pgbench client owns two of the 64 accounts
-- (client_id and client_id + 32), so that there are no conflicts to retry:
-- this is the database's own cost of an append, the ceiling of a deposit.
\set account :client_id + 32 * random(0, 1)
BEGIN;
SELECT COALESCE(MAX(sequence_number), 0) + 1 AS next FROM events
WHERE account_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:account::bigint), 12, '0'))::uuid \gset
WITH counter AS (
    UPDATE event_positions SET last = last + 1 WHERE id = 1 RETURNING last
), event AS (
    INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms)
    SELECT counter.last, ('00000000-0000-4000-8000-' || lpad(to_hex(:account::bigint), 12, '0'))::uuid, :next::bigint,
           gen_random_uuid(), 'MoneyDeposited', '{"type":"MoneyDeposited","amountDeposited":1,"balance":0}',
           (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM counter
    RETURNING account_id, transaction_id
)
INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
SELECT account_id, transaction_id, 'deposit amount=1' FROM event;
END;
