complete -c runner-poll -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-poll -l timeout -d 'Seconds to wait for the dispatcher\'s whole answer' -r
complete -c runner-poll -l force -d 'Poll even without a `ready` marker (runners that accept no inbound HTTP)'
complete -c runner-poll -s v -l verbose -d 'Print what happened to stderr'
complete -c runner-poll -l json -d 'Print the outcome as JSON to stdout'
complete -c runner-poll -s h -l help -d 'Print help (see more with \'--help\')'
complete -c runner-poll -s V -l version -d 'Print version'
