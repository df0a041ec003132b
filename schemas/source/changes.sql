-- A change generator for the compose stack: one small transaction per call. Run in a loop
-- (docker-compose service `changes`): addresses, tiers and statuses of customers change,
-- balances move with every transaction, a few customers leave and come back.
DO $$
DECLARE
    c bigint := 1 + floor(random() * 100)::bigint;
    a bigint := 1 + floor(random() * 150)::bigint;
    amt numeric(14, 2) := round((random() * 200 - 100)::numeric, 2);
    next_tx bigint := coalesce((SELECT max(id) FROM transactions), 0) + 1;
BEGIN
    INSERT INTO transactions (id, account_id, amount, kind)
    VALUES (next_tx, a, amt, CASE WHEN amt < 0 THEN 'debit' ELSE 'credit' END);
    UPDATE accounts SET balance = balance + amt WHERE id = a;
    IF random() < 0.2 THEN
        UPDATE customers
        SET city = (ARRAY['Lisbon', 'Porto', 'Madrid', 'Paris', 'Berlin', 'Rome'])[1 + floor(random() * 6)::int],
            updated_at = now()
        WHERE id = c;
    END IF;
    IF random() < 0.1 THEN
        UPDATE customers SET tier = (ARRAY['standard', 'silver', 'gold'])[1 + floor(random() * 3)::int], updated_at = now()
        WHERE id = c;
    END IF;
    IF random() < 0.05 THEN
        -- Only the ignored column changes: no new dimension version.
        UPDATE customers SET updated_at = now() WHERE id = c;
    END IF;
END
$$;
