"""Call control's two money transactions as stored procedures on MariaDB (issue 13).

A reservation of the whole call and a release each become one round trip (`CALL`) instead
of four or five: the account row is then locked only while the server runs the procedure,
never while the web process waits for its next turn of the GIL between two statements.
That wait was what limited one busy customer's calls a second (docs/CALL_CONTROL.md, "One
round trip"). PostgreSQL and SQLite keep the statements of apps.billing.services.reservations;
the tests run the same cases against both.

Each procedure opens and ends its own transaction when it is called outside one
(autocommit, no transaction open: how call control calls it), and otherwise works inside
the caller's, undoing its own insert rather than rolling back work that is not its own.
Parameters are in the order apps.billing.services.reservations passes them; a change to
either is a new migration that drops and creates the procedure again.
"""

from django.db import migrations

RESERVE_WHOLE_CALL = """
CREATE PROCEDURE billing_reserve_whole_call(
    p_account BIGINT, p_customer BIGINT, p_node BIGINT, p_call_id VARCHAR(255),
    p_amount DECIMAL(20, 6), p_seconds INT UNSIGNED, p_prefix VARCHAR(32),
    p_destination VARCHAR(100), p_route BIGINT, p_supplier BIGINT, p_callee VARCHAR(64),
    p_sell_tariff LONGTEXT, p_buy_tariffs LONGTEXT, p_caller VARCHAR(64),
    p_now DATETIME(6), p_expires DATETIME(6),
    p_postpaid VARCHAR(8), p_spend_day DATE, p_spend_month DATE
)
MODIFIES SQL DATA
SQL SECURITY INVOKER
COMMENT 'Smartswitch: hold the money of a whole call; selects the reservation id or NULL'
BEGIN
    DECLARE v_own BOOLEAN DEFAULT @@autocommit = 1 AND @@in_transaction = 0;
    DECLARE v_id BIGINT DEFAULT NULL;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        IF v_own THEN
            ROLLBACK;
        END IF;
        RESIGNAL;
    END;
    IF v_own THEN
        START TRANSACTION;
    END IF;
    -- Nothing is inserted after a release marker of this Call-ID on this node, or when the
    -- account already holds money for the Call-ID (the caller's long way tells which).
    INSERT INTO billing_reservation (
        account_id, customer_id, node_id, call_id, amount, max_duration, prefix, destination,
        route_id, supplier_id, callee, sell_tariff, buy_tariffs, caller, created_at,
        expires_at, outcome, cut_result
    )
    SELECT p_account, p_customer, p_node, p_call_id, p_amount, p_seconds, p_prefix,
        p_destination, p_route, p_supplier, p_callee, p_sell_tariff, p_buy_tariffs, p_caller,
        p_now, p_expires, '', ''
    FROM DUAL
    WHERE (p_node IS NULL OR NOT EXISTS (
            SELECT 1 FROM billing_releasemarker
            WHERE call_id = p_call_id AND node_id = p_node AND created_at >= p_now))
        AND NOT EXISTS (
            SELECT 1 FROM billing_reservation
            WHERE account_id = p_account AND released_at IS NULL AND call_id = p_call_id);
    IF ROW_COUNT() = 1 THEN
        SET v_id = LAST_INSERT_ID();
        -- The account last (LOCK ORDER), and only if its money and spend limits pay for it.
        UPDATE billing_account SET reserved = reserved + p_amount
        WHERE id = p_account
            AND balance + CASE WHEN mode = p_postpaid THEN credit_limit ELSE 0 END
                - reserved >= p_amount
            AND (p_spend_day IS NULL OR (
                (daily_spend_limit IS NULL OR daily_spend_limit
                    - CASE WHEN spent_day_of = p_spend_day THEN spent_day ELSE 0 END
                    - reserved >= p_amount)
                AND (monthly_spend_limit IS NULL OR monthly_spend_limit
                    - CASE WHEN spent_month_of = p_spend_month THEN spent_month ELSE 0 END
                    - reserved >= p_amount)));
        IF ROW_COUNT() <> 1 THEN
            IF NOT v_own THEN
                DELETE FROM billing_reservation WHERE id = v_id;
            END IF;
            SET v_id = NULL;
        END IF;
    END IF;
    IF v_own THEN
        IF v_id IS NULL THEN
            ROLLBACK;
        ELSE
            COMMIT;
        END IF;
    END IF;
    SELECT v_id;
END
"""

RELEASE = """
CREATE PROCEDURE billing_release(
    p_id BIGINT, p_call_id VARCHAR(255), p_outcome VARCHAR(7), p_now DATETIME(6)
)
MODIFIES SQL DATA
SQL SECURITY INVOKER
COMMENT 'Smartswitch: give a reservation''s money back; selects 1, or 0 if already released'
BEGIN
    DECLARE v_own BOOLEAN DEFAULT @@autocommit = 1 AND @@in_transaction = 0;
    DECLARE v_account BIGINT;
    DECLARE v_amount DECIMAL(20, 6);
    DECLARE v_done INT DEFAULT 0;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        IF v_own THEN
            ROLLBACK;
        END IF;
        RESIGNAL;
    END;
    IF v_own THEN
        START TRANSACTION;
    END IF;
    -- The reservation first: of two releases of it, the second updates no row (LOCK ORDER).
    UPDATE billing_reservation SET released_at = p_now, outcome = p_outcome
    WHERE id = p_id AND released_at IS NULL AND (p_call_id IS NULL OR call_id = p_call_id);
    IF ROW_COUNT() = 1 THEN
        SELECT account_id, amount INTO v_account, v_amount FROM billing_reservation WHERE id = p_id;
        UPDATE billing_account SET reserved = reserved - v_amount WHERE id = v_account;
        SET v_done = 1;
    END IF;
    IF v_own THEN
        COMMIT;
    END IF;
    SELECT v_done;
END
"""

PROCEDURES = {"billing_reserve_whole_call": RESERVE_WHOLE_CALL, "billing_release": RELEASE}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, text in PROCEDURES.items():
            cursor.execute(f"DROP PROCEDURE IF EXISTS {name}")
            cursor.execute(text)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in PROCEDURES:
            cursor.execute(f"DROP PROCEDURE IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("billing", "0013_reservation_caller_and_number_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
