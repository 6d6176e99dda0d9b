-- mailrun schema, version 7: the most SMTP sessions a runner may hold to an account at
-- once (providers cap it; docs/runner.md, "Concurrency"). NULL: the runner's own
-- max_sessions_per_account. It travels with the account in every JobRun.
ALTER TABLE mailrun.smtp_accounts
    ADD COLUMN max_connections integer CHECK (max_connections BETWEEN 1 AND 1000);
