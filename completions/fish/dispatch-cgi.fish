complete -c dispatch-cgi -l listen -d 'Serve HTTP on this address (for example 127.0.0.1:8080) instead of one CGI request; each worker thread keeps its database connection between requests' -r
complete -c dispatch-cgi -l database-url -d 'PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with target_session_attrs=read-write (docs/dispatcher.md)' -r
complete -c dispatch-cgi -l config -d 'Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml, /etc/mailrun/dispatcher.toml)' -r -F
complete -c dispatch-cgi -l lease-seconds -d 'Lease granted with each batch, in seconds' -r
complete -c dispatch-cgi -l max-body -d 'Largest request body accepted, in bytes' -r
complete -c dispatch-cgi -s v -l verbose -d 'Log one line per request to stderr (errors are always logged). MAILRUN_VERBOSE takes 1/0, yes/no, on/off or true/false'
complete -c dispatch-cgi -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dispatch-cgi -s V -l version -d 'Print version'
