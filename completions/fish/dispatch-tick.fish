complete -c dispatch-tick -l database-url -d 'PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write (docs/dispatcher.md)' -r
complete -c dispatch-tick -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-tick -l timeout -d 'Connect and read timeout for each runner, in seconds' -r
complete -c dispatch-tick -l parallel -d 'How many runners to contact at once' -r
complete -c dispatch-tick -l max-wake -d 'Most runners one tick wakes, however much is due' -r
complete -c dispatch-tick -l webhook-budget -d 'Most seconds spent posting delivery events to webhook endpoints per tick; no post outlives it, and what is left waits for the next tick' -r
complete -c dispatch-tick -l webhook-batch -d 'Most events in one webhook post' -r
complete -c dispatch-tick -l allow-plain-http -d 'Allow plain http:// to runners that are not on loopback (TLS is the default). MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false'
complete -c dispatch-tick -s v -l verbose -d 'Print a line per runner contacted to stderr'
complete -c dispatch-tick -l json -d 'Print a JSON summary to stdout'
complete -c dispatch-tick -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-tick -s V -l version -d 'Print version'
