# /etc/cron.d/mailrun: for hosts WITHOUT systemd. On systemd hosts enable the timers
# instead (systemctl enable --now mailrun-dispatch-tick.timer / mailrun-runner-cycle.timer)
# and leave these lines commented, or each step runs twice.
#
# The commands print nothing when all is well; cron mails whatever they print.
MAILRUN_CONFIG=/etc/mailrun/dispatcher.toml
MAILRUN_RUNNER_DIR=/var/lib/mailrun/runner

# Dispatcher: check the queue every INTERVAL_CHECK (here one minute).
#* * * * *   mailrun   /usr/bin/dispatch-tick

# Runner: poll and deliver (add --force if this runner accepts no inbound HTTP).
#* * * * *   mailrun   /usr/bin/runner-admin cycle --max-seconds 55

# A daily digest of yesterday's deliveries, mailed through mailrun itself (counts and
# failures in the body, every attempt as a CSV attachment; [defaults] from is the sender).
#0 7 * * *   mailrun   /usr/bin/dispatch-admin report --since 24h --mail-to ops@example.com
