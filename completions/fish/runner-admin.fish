# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_runner_admin_global_optspecs
    string join \n state-dir= h/help V/version
end

function __fish_runner_admin_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_runner_admin_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_runner_admin_using_subcommand
    set -l cmd (__fish_runner_admin_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c runner-admin -n "__fish_runner_admin_needs_command" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_needs_command" -s h -l help -d 'Print help'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -s V -l version -d 'Print version'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "init" -d 'Create the state folder and runner.toml (mode 0600)'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "wsdl" -d 'Print runner-cgi\'s WSDL with its real address and the schema inlined, for SOAP stacks to load as it is (a dispatcher written elsewhere); needs no state folder'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "status" -d 'Show config version, reply rules, spooled batches, journal progress, outbox, ready marker, lock'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "policy" -d 'List the reply policy the dispatcher pushed, as runner-send applies it'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "cycle" -d 'Poll, send, poll again... until the dispatcher has no work, the time budget ends, or the dispatcher does not answer. This is what cron and runner-cgi start'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "rotate-key" -d 'Switch to a new signing key; the old one stays accepted on inbound requests until `drop-previous-key` (rotate at the dispatcher too)'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "drop-previous-key" -d 'Stop accepting the previous key'
complete -c runner-admin -n "__fish_runner_admin_needs_command" -f -a "self-update" -d 'Install the runner build the dispatcher announced (not in distribution packages)'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l dispatcher-url -d 'The dispatcher\'s endpoint, e.g. https://mail.example.com/cgi-bin/dispatch-cgi' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l runner-id -d 'This runner\'s id, as registered at the dispatcher' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l key-id -d 'The id of the signing key' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l key -d 'The 32-byte key as 64 hex characters (prefer --key-file: shell history keeps this)' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l key-file -d 'Read the key (64 hex characters) from this file, or from stdin with `-`' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l allow-plain-http -d 'Allow plain http:// to a non-loopback dispatcher (off by default)'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -l force -d 'Replace an existing runner.toml (pushed settings are kept)'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand init" -s h -l help -d 'Print help'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand wsdl" -l url -d 'The URL of this runner\'s runner-cgi, e.g. https://host/cgi-bin/runner-cgi' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand wsdl" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand wsdl" -s h -l help -d 'Print help'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand status" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand status" -l json -d 'Print JSON instead of text'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand status" -s h -l help -d 'Print help'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand policy" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand policy" -l json -d 'Print JSON instead of text'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand policy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand cycle" -l max-seconds -d 'Stop starting new polls after this many seconds [default: the poll interval]' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand cycle" -l timeout -d 'Seconds to wait for each dispatcher answer' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand cycle" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand cycle" -l force -d 'Poll even without a `ready` marker'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand cycle" -s v -l verbose -d 'Print progress to stderr'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand cycle" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand rotate-key" -l key-id -d 'The id of the new key' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand rotate-key" -l key -d 'The new key as 64 hex characters (prefer --key-file)' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand rotate-key" -l key-file -d 'Read the new key from this file, or from stdin with `-`' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand rotate-key" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand rotate-key" -s h -l help -d 'Print help'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand drop-previous-key" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand drop-previous-key" -s h -l help -d 'Print help'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand self-update" -l timeout -d 'Seconds the download may take' -r
complete -c runner-admin -n "__fish_runner_admin_using_subcommand self-update" -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-admin -n "__fish_runner_admin_using_subcommand self-update" -s v -l verbose -d 'Say what was done (on stderr)'
complete -c runner-admin -n "__fish_runner_admin_using_subcommand self-update" -s h -l help -d 'Print help (see more with \'--help\')'
