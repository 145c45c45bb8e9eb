-- Every node LISTENs on `tlschat_accounts` and re-reads the account stamps when told, instead
-- of polling every account: a password, state or certificate change, or a deleted account,
-- notifies once per statement (PostgreSQL folds identical notifications of a transaction).
CREATE FUNCTION tlschat_notify_account_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('tlschat_accounts', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_changed
    AFTER UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION tlschat_notify_account_change();

CREATE TRIGGER certificates_removed
    AFTER DELETE ON certificates
    FOR EACH STATEMENT EXECUTE FUNCTION tlschat_notify_account_change();
