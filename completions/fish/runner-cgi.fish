complete -c runner-cgi -l state-dir -d 'Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]' -r -F
complete -c runner-cgi -l listen -d 'Serve HTTP on ADDR (e.g. 127.0.0.1:8025) instead of answering one CGI request' -r
complete -c runner-cgi -l no-start -d 'Do not start a delivery cycle after JobRunnerReady (leave it to cron)'
complete -c runner-cgi -s h -l help -d 'Print help (see more with \'--help\')'
complete -c runner-cgi -s V -l version -d 'Print version'
