# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_push_config_global_optspecs
    string join \n runner= all force database-url= config= timeout= allow-plain-http v/verbose json h/help V/version
end

function __fish_push_config_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_push_config_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_push_config_using_subcommand
    set -l cmd (__fish_push_config_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c push-config -n "__fish_push_config_needs_command" -l runner -d 'Push to this runner only' -r
complete -c push-config -n "__fish_push_config_needs_command" -l database-url -d 'PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write (docs/dispatcher.md)' -r
complete -c push-config -n "__fish_push_config_needs_command" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c push-config -n "__fish_push_config_needs_command" -l timeout -d 'Connect and read timeout for each runner, in seconds' -r
complete -c push-config -n "__fish_push_config_needs_command" -l all -d 'Push to every enabled runner'
complete -c push-config -n "__fish_push_config_needs_command" -l force -d 'Push even to runners whose recorded version is already current'
complete -c push-config -n "__fish_push_config_needs_command" -l allow-plain-http -d 'Allow plain http:// to runners that are not on loopback (TLS is the default). MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false'
complete -c push-config -n "__fish_push_config_needs_command" -s v -l verbose -d 'Print a line per runner to stderr'
complete -c push-config -n "__fish_push_config_needs_command" -l json -d 'Print the result as JSON on stdout'
complete -c push-config -n "__fish_push_config_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c push-config -n "__fish_push_config_needs_command" -s V -l version -d 'Print version'
complete -c push-config -n "__fish_push_config_needs_command" -f -a "set" -d 'Create a new config version with KEY=VALUE changes, then push it'
complete -c push-config -n "__fish_push_config_needs_command" -f -a "show" -d 'Print the latest config version'
complete -c push-config -n "__fish_push_config_using_subcommand set" -l runner -d 'Push to this runner only' -r
complete -c push-config -n "__fish_push_config_using_subcommand set" -l database-url -d 'PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write (docs/dispatcher.md)' -r
complete -c push-config -n "__fish_push_config_using_subcommand set" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c push-config -n "__fish_push_config_using_subcommand set" -l timeout -d 'Connect and read timeout for each runner, in seconds' -r
complete -c push-config -n "__fish_push_config_using_subcommand set" -l no-push -d 'Only create the version; push later'
complete -c push-config -n "__fish_push_config_using_subcommand set" -l all -d 'Push to every enabled runner'
complete -c push-config -n "__fish_push_config_using_subcommand set" -l force -d 'Push even to runners whose recorded version is already current'
complete -c push-config -n "__fish_push_config_using_subcommand set" -l allow-plain-http -d 'Allow plain http:// to runners that are not on loopback (TLS is the default). MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false'
complete -c push-config -n "__fish_push_config_using_subcommand set" -s v -l verbose -d 'Print a line per runner to stderr'
complete -c push-config -n "__fish_push_config_using_subcommand set" -l json -d 'Print the result as JSON on stdout'
complete -c push-config -n "__fish_push_config_using_subcommand set" -s h -l help -d 'Print help'
complete -c push-config -n "__fish_push_config_using_subcommand show" -l runner -d 'Push to this runner only' -r
complete -c push-config -n "__fish_push_config_using_subcommand show" -l database-url -d 'PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write (docs/dispatcher.md)' -r
complete -c push-config -n "__fish_push_config_using_subcommand show" -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c push-config -n "__fish_push_config_using_subcommand show" -l timeout -d 'Connect and read timeout for each runner, in seconds' -r
complete -c push-config -n "__fish_push_config_using_subcommand show" -l all -d 'Push to every enabled runner'
complete -c push-config -n "__fish_push_config_using_subcommand show" -l force -d 'Push even to runners whose recorded version is already current'
complete -c push-config -n "__fish_push_config_using_subcommand show" -l allow-plain-http -d 'Allow plain http:// to runners that are not on loopback (TLS is the default). MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false'
complete -c push-config -n "__fish_push_config_using_subcommand show" -s v -l verbose -d 'Print a line per runner to stderr'
complete -c push-config -n "__fish_push_config_using_subcommand show" -l json -d 'Print the result as JSON on stdout'
complete -c push-config -n "__fish_push_config_using_subcommand show" -s h -l help -d 'Print help'
