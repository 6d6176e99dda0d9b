//! Everything scheduled in view (issue 21, item 3): 10,000 scheduled messages page
//! through `dispatch-admin list` and through the status page of a real `dispatch-cgi`,
//! each exactly once and in send order, with many messages sharing one send time (the
//! keyset's tie on id).

use std::collections::BTreeSet;

use postgres::{Client, NoTls};
use serde_json::{json, Value};

use crate::common::pipeline::Listening;
use crate::common::{self, admin, assert_status, initialised_db, json_out};

const N: i64 = 10_000;

/// N messages scheduled over the next days, 10 per send time; one in an other domain
/// and account. Returns the ids in (send_at, id) order.
fn fill(url: &str) -> Vec<i64> {
    for name in ["main", "other"] {
        assert_status(
            &admin(
                url,
                &[
                    "account",
                    "add",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "2525",
                    "--security",
                    "none",
                ],
            ),
            0,
        );
    }
    let mut c = Client::connect(url, NoTls).unwrap();
    let first: i64 = c
        .query_one(
            "SELECT mailrun.enqueue($1)",
            &[
                &json!({"from": "app@example.com", "to": ["x@example.org"], "subject": "s",
                      "text": "t", "account": "main", "send_at": (chrono::Utc::now()
                          + chrono::Duration::days(2)).to_rfc3339()}),
            ],
        )
        .unwrap()
        .get(0);
    c.execute(
        "INSERT INTO mailrun.messages (account_id, from_addr, to_addrs, subject, text_body,
             size_bytes, message_id_header, send_at, next_attempt_at, expires_at)
         SELECT account_id, from_addr, to_addrs, subject || g, text_body, size_bytes,
             '<' || g || '.list@example.com>', send_at + (g / 10) * interval '1 minute',
             next_attempt_at + (g / 10) * interval '1 minute', expires_at
         FROM mailrun.messages, generate_series(1, $2::int - 1) g WHERE id = $1",
        &[&first, &(N as i32)],
    )
    .unwrap();
    c.execute(
        "UPDATE mailrun.messages SET to_addrs = '{y@example.net}',
             account_id = (SELECT id FROM mailrun.smtp_accounts WHERE name = 'other')
         WHERE id = (SELECT max(id) FROM mailrun.messages)",
        &[],
    )
    .unwrap();
    c.query("SELECT id FROM mailrun.messages ORDER BY send_at, id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn ids(v: &Value) -> Vec<i64> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn ten_thousand_scheduled_messages_page_through_list_and_the_status_page() {
    let url = initialised_db("listing_10k");
    let expected = fill(&url);
    assert_eq!(expected.len() as i64, N);

    // --all in one go.
    let out = admin(
        &url,
        &[
            "--json",
            "list",
            "--state",
            "scheduled",
            "--all",
            "--limit",
            "1000",
        ],
    );
    assert_status(&out, 0);
    let all = json_out(&out);
    assert_eq!(ids(&all), expected);
    assert!(all["next_cursor"].is_null());

    // Page by page with the cursor, an odd page size so pages end inside a tie.
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["--json", "list", "--state", "scheduled", "--limit", "777"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = json_out(&admin(&url, &args));
        got.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, (N + 776) / 777);
    assert_eq!(got, expected);

    // Filters.
    let one = json_out(&admin(&url, &["--json", "list", "--domain", "EXAMPLE.NET"]));
    assert_eq!(ids(&one), vec![*expected.iter().max().unwrap()]);
    let one = json_out(&admin(&url, &["--json", "list", "--account", "other"]));
    assert_eq!(ids(&one).len(), 1);
    let window = json_out(&admin(
        &url,
        &[
            "--json",
            "list",
            "--send-after",
            "in 2 days",
            "--send-before",
            "in 3 days",
            "--limit",
            "1000",
            "--all",
        ],
    ));
    let n = ids(&window).len();
    assert!(n > 0 && (n as i64) < N, "{n}");
    let table = admin(&url, &["list", "--limit", "5"]);
    assert_status(&table, 0);
    assert_eq!(common::stdout(&table).lines().count(), 6);
    assert!(common::stderr(&table).contains("--cursor "));
    assert_status(&admin(&url, &["list", "--state", "lost"]), 64);
    assert_status(&admin(&url, &["list", "--cursor", "garbage"]), 64);

    // The status page of a real dispatch-cgi, following its "next" links.
    let port = common::free_port();
    let server = Listening::start(&url, port, 600);
    let base = server.url();
    let mut seen = Vec::new();
    let mut href = String::new();
    let mut pages = 0;
    loop {
        let html = ureq::get(&format!("{base}{href}"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        for part in html.split("<tr class=\"scheduled\" data-id=\"").skip(1) {
            seen.push(part[..part.find('"').unwrap()].parse::<i64>().unwrap());
        }
        pages += 1;
        assert!(pages <= 300, "the status page does not end");
        match html.split("id=\"scheduled-next\" href=\"").nth(1) {
            Some(rest) => href = rest[..rest.find('"').unwrap()].to_string(),
            None => break,
        }
    }
    assert_eq!(pages, (N + 49) / 50);
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
}
