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

complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -s V -l version -d 'Print version'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "init" -d 'Create the mailrun schema (or bring it up to date) and sync the retry policy'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "migrate" -d 'Apply pending schema migrations and sync the retry policy; refuses a newer schema'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "policy" -d 'Show or sync the retry policy (mailrun.policy) from the config file'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "runner" -d 'Manage runners'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "account" -d 'Manage SMTP accounts'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "enqueue" -d 'Queue messages: from flags, an .eml file, or JSON lines on stdin (--jsonl)'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "status" -d 'Counts by state, the oldest due message, and the runners'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "show" -d 'One message with every delivery attempt, per recipient'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "cancel" -d 'Cancel queued, deferred or leased messages'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "retry" -d 'Make messages due now again (deferred, failed, expired, cancelled, or sent with failed recipients: only those are retried)'
complete -c dispatch-admin -n "__fish_dispatch_admin_needs_command" -f -a "purge" -d 'Delete finished messages (sent, failed, cancelled, expired) older than an age'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand init" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -f -a "show" -d 'Print the policy in force'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and not __fish_seen_subcommand_from show sync" -f -a "sync" -d 'Write the config file\'s [retry] section (defaults for what it omits) to the database'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand policy; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "add" -d 'Register a runner; prints its new key once, with the runner-admin line to paste'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "list" -d 'List runners'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "set" -d 'Change a runner\'s endpoint or batch size'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "disable" -d 'Stop handing work to a runner'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "enable" -d 'Hand work to a runner again'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "rotate-key" -d 'Make a new key (printed once); the old key stays valid until confirm-key'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and not __fish_seen_subcommand_from add list set disable enable rotate-key confirm-key" -f -a "confirm-key" -d 'Forget the previous key after a rotation (the dispatcher also does this when the runner first signs with the new key)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l endpoint -d 'The runner\'s runner-cgi URL (JobRunnerReady and config pushes go there)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l batch-size -d 'Most messages per JobRun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l dispatcher-url -d 'This dispatcher\'s dispatch-cgi URL, for the printed runner-admin line' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l endpoint -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l batch-size -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l dispatcher-url -d 'This dispatcher\'s dispatch-cgi URL, for the printed runner-admin line' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from rotate-key" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand runner; and __fish_seen_subcommand_from confirm-key" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -f -a "add" -d 'Add an SMTP account. The password is read from --password-file (or stdin with `-`), or from MAILRUN_SMTP_PASSWORD; never from the command line'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -f -a "list" -d 'List accounts (passwords show as "set" or "none")'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and not __fish_seen_subcommand_from add list test" -f -a "test" -d 'Connect, negotiate TLS as configured and log in; report the server\'s answer'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l host -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l port -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l security -r -f -a "none\t''
starttls\t''
tls\t''"
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l username -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l password-file -d 'File holding the password (first line), `-` for stdin' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l insecure-plain-auth -d 'Allow a login over --security none to a host other than localhost (the password then crosses the network in clear)'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand account; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l to -d 'Recipient (repeatable)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l cc -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l bcc -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l from -d 'Sender [default: [defaults] from in the config file]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l reply-to -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l subject -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l text -d 'Plain-text body' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l text-file -d 'Plain-text body from a file (`-` for stdin)' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l html-file -d 'HTML body from a file' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l header -d 'Extra header "Name: value" (repeatable)' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l attach -d 'Attach a file (repeatable); the content type follows the extension' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l account -d 'SMTP account name [default: config, else the only account]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l send-at -d 'Send no earlier than this: "in 2 hours", "tomorrow 9am", "friday 17:30", "2026-12-01 08:00" (local, see --time-zone) or RFC 3339' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l time-zone -d 'IANA time zone for local --send-at times [default: time_zone in the config file, else UTC]' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l message-id -d 'Message-ID to use instead of a generated <uuid@from-domain>' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l eml -d 'Read the message from an RFC 5322 file (single-part text); flags override its headers' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l jsonl -d 'Read one JSON message per line from stdin (or the file given); all or nothing' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l skip-invalid -d 'With --jsonl: skip invalid lines (reported on stderr) instead of refusing all'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand enqueue" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand status" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand show" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand retry" -s h -l help -d 'Print help'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l older-than -d 'Age such as 30d, 12h, 90m or 3600s' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l database-url -d 'PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun' -r
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l config -d 'Config file [default: see below]' -r -F
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -l json -d 'Print machine-readable JSON'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -s v -l verbose -d 'Say what was done'
complete -c dispatch-admin -n "__fish_dispatch_admin_using_subcommand purge" -s h -l help -d 'Print help'
