complete -c runner-send -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-send -s v -l verbose -d 'Print one line per message to stderr'
complete -c runner-send -l json -d 'Print a JSON summary (batches, sent, deferred, failed, not_attempted) to stdout'
complete -c runner-send -s h -l help -d 'Print help (see more with \'--help\')'
complete -c runner-send -s V -l version -d 'Print version'
