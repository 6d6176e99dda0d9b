# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dispatch_admin_global_optspecs
    string join \n database-url= config= json v/verbose h/help V/version
end

function __fish_dispatch_admin_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dispatch_admin_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dispatch_admin_using_subcommand
    set -l cmd (__fish_dispatch_admin_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -s V -l version -d 'Print version'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "init" -d 'Create the mailrun schema (or bring it up to date) and sync the retry policy'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "migrate" -d 'Apply pending schema migrations and sync the retry policy; refuses a newer schema'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "schedule" -d 'Recurring jobs: add (cron spec + message template), list, show, pause, resume, remove. dispatch-tick enqueues each due occurrence exactly once'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "report" -d 'Delivery results: every attempt with its SMTP answer (table, --json or --csv), or --summary per job run or recurring job'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "policy" -d 'Show or sync the retry policy (mailrun.policy) from the config file'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "runner" -d 'Manage runners'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "account" -d 'Manage SMTP accounts'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "enqueue" -d 'Queue messages: from flags, an .eml file, or JSON lines on stdin (--jsonl)'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "list" -d 'Messages by send time with filters (state, account, recipient domain, send-at range, recurring job), a page at a time or --all'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "status" -d 'Counts by state, the oldest due message, and the runners'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "show" -d 'One message with every delivery attempt, per recipient'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "cancel" -d 'Cancel queued, deferred or leased messages'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "retry" -d 'Make messages due now again (deferred, failed, expired, cancelled, or sent with failed recipients: only those are retried)'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "purge" -d 'Delete finished messages (sent, failed, cancelled, expired) older than an age'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "quota" -d 'Sending caps per account, runner and recipient domain; throttle state'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "suppress" -d 'The suppression list: recipients never sent to'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "reply-rule" -d 'The reply policy: what SMTP answers mean (retry, another account, suppress, fail)'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "unknown" -d 'Messages whose outcome is unknown (DATA sent, no answer): list and resolve'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "account-group" -d 'Named failover lists of SMTP accounts (enqueue --account-group)'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "wsdl" -d 'Print dispatch-cgi\'s WSDL with its real address and the schema inlined, for SOAP stacks (zeep, SoapClient...) to load as it is; needs no database'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "api-key" -d 'Keys of the HTTP JSON API (dispatch-cgi under /api/v1/): add, list, revoke'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "webhook" -d 'Endpoints that receive delivery events (signed JSON posts from dispatch-tick): add, list, remove, test'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -f -a "add" -d 'Add a recurring job: a crontab spec and a message template (one JSON object in the shape of an `enqueue --jsonl` line, without send_at and message_id). The template is checked like an enqueue now; prints the job id'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -f -a "list" -d 'List recurring jobs with their next run'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -f -a "show" -d 'One job with its template and its latest occurrences'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -f -a "pause" -d 'Stop materialising a job\'s occurrences'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -f -a "resume" -d 'Materialise a paused job again, from its first occurrence after now (the occurrences missed while paused are not caught up)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and not __fish_seen_subcommand_from add list show pause resume remove" -f -a "remove" -d 'Delete a job and its occurrence history (its queued messages stay queued)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l cron -d 'Standard 5-field crontab spec ("0 9 * * MON") or @hourly, @daily, @weekly, @monthly, @yearly' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l template -d 'File with the JSON message template, `-` for stdin' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l time-zone -d 'IANA time zone the spec\'s times are read in [default: time_zone in the config file, else UTC]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l name -d 'A unique name to refer to the job by (letters, digits, \'.\', \'_\', \'-\')' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l max-lateness -d 'Skip an occurrence a tick sees later than this (after an outage) instead of sending it late: 30m, 6h, 2d' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l count -d 'Stop after this many occurrences have queued a message (skipped or refused occurrences do not count)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l until -d 'No occurrence after this time: RFC 3339 or a send-later phrase ("in 30 days", "2027-01-31 18:00"), read in the job\'s time zone' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from show" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from show" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from show" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from pause" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from resume" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l since -d 'Attempts at or after this time' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l until -d 'Attempts before this time' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l state -l outcome -d 'Only rows with this outcome (per recipient where the runner said)' -r -f -a "sent\t''
deferred\t''
failed\t''
not_attempted\t''"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l runner -d 'Only attempts by this runner' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l job-run -d 'Only this job run (batch)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l recurring-job -d 'Only messages of this recurring job (id or name)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l message -d 'Only this message' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l limit -d 'At most this many rows' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l summary -d 'Counts per job run (default) or per recurring job instead of attempt rows' -r -f -a "job-run\t'Per batch handed to a runner: messages sent, deferred, failed'
recurring-job\t'Per recurring job: occurrences, and its messages by current state'"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l time-zone -d 'IANA time zone for local --since/--until [default: time_zone in the config file, else UTC]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l mail-to -d 'Queue the report as a message to this address (repeatable), through mailrun itself: counts and the first failures in the body, every row as a CSV attachment; prints the message id' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l mail-from -d 'Sender of the mailed report [default: [defaults] from in the config file]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l mail-account -d 'SMTP account of the mailed report [default: [defaults] account, else the only account]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l csv -d 'Print CSV (RFC 4180, with a header line) instead of a table'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -f -a "show" -d 'Print the policy in force'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -f -a "sync" -d 'Write the config file\'s [retry] section (defaults for what it omits) to the database'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "add" -d 'Register a runner; prints its new key once, with the runner-admin line to paste'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "list" -d 'List runners'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "set" -d 'Change a runner\'s endpoint or batch size'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "disable" -d 'Stop handing work to a runner'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "enable" -d 'Hand work to a runner again'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "revoke" -d 'Take a runner out of service now (a dead host, a stolen key): disable it, so its requests are refused, and return the messages leased to it to the queue at once (the next dispatch-tick hands them to another runner) instead of when the lease ends. Reports it sends after a later `enable` are recorded as late, never applied twice'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "remove" -d 'Revoke a runner, then delete it with its job runs, leases and runner quotas (its delivery attempts stay, naming it)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "rotate-key" -d 'Make a new key (printed once); the old key stays valid until confirm-key'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable revoke remove rotate-key confirm-key" -f -a "confirm-key" -d 'Forget the previous key after a rotation (the dispatcher also does this when the runner first signs with the new key)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l endpoint -d 'The runner\'s runner-cgi URL (JobRunnerReady and config pushes go there)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l batch-size -d 'Most messages per JobRun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l dispatcher-url -d 'This dispatcher\'s dispatch-cgi URL, for the printed runner-admin line' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l endpoint -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l batch-size -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from revoke" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from revoke" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from revoke" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from revoke" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l dispatcher-url -d 'This dispatcher\'s dispatch-cgi URL, for the printed runner-admin line' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "add" -d 'Add an SMTP account. The password is read from --password-file (or stdin with `-`), or from MAILRUN_SMTP_PASSWORD; never from the command line'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "limit" -d 'Set the most SMTP sessions a runner may hold to an account at once (sent to runners with every batch)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "list" -d 'List accounts (passwords show as "set" or "none")'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "test" -d 'Connect, negotiate TLS as configured and log in; report the server\'s answer'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "disable" -d 'Stop sending through an account (messages fail over to their next account, or wait)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "enable" -d 'Send through an account again'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add limit list test disable enable remove" -f -a "remove" -d 'Delete an account. Refused while messages (unfinished or finished) or account groups use it, unless --to moves them all to another account (failover lists keep their order); its quotas and throttle state go with it'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l host -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l port -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l security -r -f -a "none\t''
starttls\t''
tls\t''"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l username -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l password-file -d 'File holding the password (first line), `-` for stdin' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l max-connections -d 'Most SMTP sessions a runner may hold to this account at once (the provider\'s cap) [default: the runner\'s max_sessions_per_account, 20]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l insecure-plain-auth -d 'No effect, kept for old scripts: a login over --security none is accepted for loopback hosts only (127.0.0.0/8, ::1, localhost), without this flag, because runners never send a password in clear to any other host'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -l max-connections -d 'Sessions at once (1-1000)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -l clear -d 'Remove the account\'s own limit: runners use their max_sessions_per_account'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from limit" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from disable" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from disable" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from disable" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from disable" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from enable" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from enable" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from enable" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from enable" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from remove" -l to -d 'The account that takes over its messages and group memberships' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l to -d 'Recipient (repeatable)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l cc -d 'Copy recipient (repeatable)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l bcc -d 'Blind copy recipient (repeatable; not shown in the headers)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l from -d 'Sender [default: [defaults] from in the config file]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l reply-to -d 'Reply-To address [default: [defaults] reply_to in the config file]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l subject -d 'Subject line' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l text -d 'Plain-text body' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l text-file -d 'Plain-text body from a file (`-` for stdin)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l html-file -d 'HTML body from a file' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l header -d 'Extra header "Name: value" (repeatable)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l attach -d 'Attach a file (repeatable); the content type follows the extension' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l account -d 'SMTP account name [default: config, else the only account]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l accounts -d 'Failover list of SMTP accounts, tried in order when one is over quota, disabled, throttled or failing (docs/quotas.md)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l account-group -d 'A named failover list (dispatch-admin account-group)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l send-at -d 'Send no earlier than this: "in 2 hours", "tomorrow 9am", "friday 17:30", "2026-12-01 08:00" (local, see --time-zone) or RFC 3339' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l time-zone -d 'IANA time zone for local --send-at times [default: time_zone in the config file, else UTC]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l message-id -d 'Message-ID to use instead of a generated <uuid@from-domain>' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l eml -d 'Read the message from an RFC 5322 file (single-part text in UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 or windows-1252); flags override its headers' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l jsonl -d 'Read one JSON message per line from stdin (or the file given); all or nothing' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l skip-invalid -d 'With --jsonl: skip invalid lines (reported on stderr) instead of refusing all'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l state -d 'Only this state: scheduled (queued, never tried, due later than now) or a message state (queued, leased, deferred, sent, failed, cancelled, expired, unknown)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l account -d 'Only messages of this SMTP account' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l domain -d 'Only messages with a recipient (To, Cc or Bcc) in this domain' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l send-after -d 'Only messages due at or after this time' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l send-before -d 'Only messages due before this time' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l recurring-job -d 'Only messages of this recurring job (id or name)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l limit -d 'Messages per page (1-1000)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l cursor -d 'Continue after the page that printed this cursor' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l time-zone -d 'IANA time zone for local times [default: time_zone in the config file, else UTC]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l all -d 'Print every page, not only the first'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l older-than -d 'Age such as 30d, 12h, 90m or 3600s' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -f -a "set" -d 'Set the caps of an SMTP account, a runner or a recipient domain (replacing its caps). --per-hour and --per-day count UTC calendar hours and days; --window slides. Example: quota set account main --per-hour 300 --per-day 2000'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -f -a "remove" -d 'Remove the caps of a scope'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -f -a "list" -d 'Caps and use now, throttled accounts and domains, and what is held back'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -f -a "unthrottle" -d 'Forget the throttle state of an account or domain (back to full speed now)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and not __fish_seen_subcommand_from set remove list unthrottle settings" -f -a "settings" -d 'Show or change the throttle rule and the unknown-outcome rule'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l per-second -d 'At most N messages handed out per second' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l per-hour -d 'At most N per UTC hour' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l per-day -d 'At most N per UTC day' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l window -d 'Sliding window "N/SECONDS", e.g. 100/600: at most 100 in any 10 minutes' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from unthrottle" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from unthrottle" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from unthrottle" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from unthrottle" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from unthrottle" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l throttle-pause-seconds -d 'First pause after a throttle signal (divided by the new factor)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l throttle-max-pause-seconds -d 'Longest pause' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l throttle-recover-seconds -d 'Quiet time after which the factor doubles back towards 1' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l throttle-min-factor -d 'Lowest factor (default 1/64)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l unknown-retry-after -d 'Retry messages with an unknown outcome this long after the attempt' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l unknown-review -d 'Leave messages with an unknown outcome to an operator (the default)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand quota; and __fish_seen_subcommand_from settings" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -f -a "add" -d 'Never send to these addresses'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -f -a "remove" -d 'Take addresses off the list'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -f -a "list" -d 'Entries, newest first'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and not __fish_seen_subcommand_from add remove list check" -f -a "check" -d 'Is this address suppressed? Exit 0 if so, 3 if not'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from add" -l reason -d 'Why (shown in listings and in the messages\' last answer)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from list" -l limit -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from check" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from check" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from check" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand suppress; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -f -a "list" -d 'The rules in the order they are tried (first match decides)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -f -a "add" -d 'Add a rule. Every condition given must match'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -f -a "remove" -d 'Remove a rule by id (a new runner config version: push it with `push-config --all`)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and not __fish_seen_subcommand_from list add remove test" -f -a "test" -d 'What the policy decides for an answer'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l action -d 'What a match does' -r -f -a "retry\t'Temporary: deferred with the retry policy\'s backoff'
another-account\t'Temporary: the message moves to the next account of its failover list, due now (without a list, or when all failed: as retry)'
suppress\t'Permanent for this recipient, and the recipient goes on the suppression list'
fail\t'Permanent for this recipient'"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l throttle -d 'Slow down the account or the recipient domain on a match' -r -f -a "none\t''
account\t'The SMTP account the message was sent through'
domain\t'The recipient\'s domain'"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l code -d 'SMTP code, x = any digit: 550, 4xx' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l enhanced -d 'Enhanced status prefix: 5.7 or 5.7.1' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l pattern -d 'Case-insensitive POSIX regular expression on the reply text' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l domain -d 'Recipient domain (or a parent domain), e.g. gmail.com' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l account -d 'SMTP account name (the provider)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l position -d 'Place in the order (later rules move down); default: last' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l note -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l code -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l enhanced -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l text -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l domain -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l account -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand reply-rule; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -f -a "list" -d 'Messages whose outcome is unknown (DATA sent, no answer)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and not __fish_seen_subcommand_from list resolve" -f -a "resolve" -d 'Decide what happened to messages with an unknown outcome (all or nothing)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from list" -l limit -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from resolve" -l as -r -f -a "sent\t'It arrived (e.g. the recipient confirmed): pending recipients count as sent'
failed\t'Give up: pending recipients count as failed'
retry\t'Send it again now (the recipient may get two copies)'"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from resolve" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from resolve" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from resolve" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from resolve" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand unknown; and __fish_seen_subcommand_from resolve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -f -a "set" -d 'Create or replace a group: its accounts in failover order. Messages take the list as it is when they are enqueued'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -f -a "remove" -d 'Remove a group (queued messages keep their list)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and not __fish_seen_subcommand_from set remove list" -f -a "list" -d 'List groups'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from set" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from set" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from set" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account-group; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand wsdl" -l url -d 'The URL runners post to, e.g. https://mail.example.com/cgi-bin/dispatch-cgi' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand wsdl" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand wsdl" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand wsdl" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand wsdl" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand wsdl" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -f -a "add" -d 'Make a key and print it once (only its SHA-256 is stored: it cannot be shown again). Scopes: read (GET only), send (also queue and cancel messages), admin (also add, pause, resume and remove recurring jobs)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -f -a "list" -d 'Every key with its scope, note, last use and revocation (never the key itself)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and not __fish_seen_subcommand_from add list revoke" -f -a "revoke" -d 'Refuse a key from now on (by id or prefix); its answers stay stored'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -l scope -d 'What the key may do' -r -f -a "send\t''
read\t''
admin\t''"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -l note -d 'A note to recognise the key by in `list` (which application holds it)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from revoke" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from revoke" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from revoke" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from revoke" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand api-key; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -f -a "add" -d 'Register an endpoint and print its signing secret once (docs/webhooks.md says how to verify a post). https://, or http:// to loopback only unless allowed'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -f -a "list" -d 'Every endpoint with its events, pending count, failures and last error (never the secret)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -f -a "remove" -d 'Remove an endpoint; its undelivered events are dropped for it'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and not __fish_seen_subcommand_from add list remove test" -f -a "test" -d 'Post a signed test body (no events) to an endpoint now and say how it answered'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -l events -d 'Comma-separated: queued, sent, deferred, failed, cancelled, expired, unknown, or all' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -l allow-plain-http -d 'Allow plain http:// to a host that is not on loopback. MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from list" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from remove" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from remove" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -l timeout -d 'Connect and answer timeout, in seconds' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -l allow-plain-http -d 'Allow plain http:// to a host that is not on loopback'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand webhook; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
