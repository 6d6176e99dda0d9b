//! The runner examples of docs/clients.md, taken from the document as written and run
//! against a real dispatch-cgi behind lighttpd: each must get its batch, check the
//! signatures, and have its report acknowledged. A stack whose interpreter or SOAP
//! library is missing is skipped with a message (scripts/test-setup.sh installs all).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::pipeline::{self, Db, RunnerNode};

/// The fenced code block of `language` in docs/clients.md.
fn example(language: &str) -> String {
    let doc = std::fs::read_to_string(pipeline::manifest_path("docs/clients.md"))
        .expect("docs/clients.md");
    let fence = format!("```{language}\n");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("no {language} example"))
        + fence.len();
    let end = start + doc[start..].find("\n```").expect("closing fence");
    doc[start..end].to_string() + "\n"
}

/// The interpreter for `language`, or why the example cannot run here.
fn interpreter(language: &str) -> Result<Vec<String>, String> {
    let works = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match language {
        "php" => works(&["php", "-r", "exit(class_exists('DOMDocument') ? 0 : 1);"])
            .then(|| vec!["php".to_string()])
            .ok_or("php-cli with php-xml (DOM) is not installed".to_string()),
        "perl" => works(&["perl", "-MSOAP::Lite", "-MDigest::SHA", "-e", "1"])
            .then(|| vec!["perl".to_string()])
            .ok_or("perl with SOAP::Lite (libsoap-lite-perl) is not installed".to_string()),
        "python" => {
            let venv = pipeline::manifest_path(".venv-test/bin/python3");
            let python = if venv.exists() {
                venv.display().to_string()
            } else {
                "python3".to_string()
            };
            works(&[&python, "-c", "import zeep"])
                .then(|| vec![python])
                .ok_or("python3 with zeep is not installed".to_string())
        }
        other => Err(format!("no interpreter for {other}")),
    }
}

fn run_example(language: &str, file_name: &str) {
    let argv = match interpreter(language) {
        Ok(argv) => argv,
        Err(why) => {
            eprintln!("SKIPPED: the {language} example of docs/clients.md: {why}");
            return;
        }
    };
    let db = Db::new(
        common::cluster().fresh_db(&format!("clients_{language}")),
        9,
    );
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let url = dispatcher.url("dispatch-cgi");
    let runner = RunnerNode::init(&format!("example-{language}"), &url);
    db.add_runner(&runner, "http://127.0.0.1:9/unused", 10);
    db.enqueue(3);

    let dir = common::temp_dir();
    let script: PathBuf = dir.path().join(file_name);
    std::fs::write(&script, example(language)).expect("write example");
    let wsdl = dir.path().join("dispatcher.wsdl");
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin")).args(["wsdl", "--url", &url]),
    );
    common::assert_status(&out, 0);
    std::fs::write(&wsdl, &out.stdout).expect("write WSDL");

    let out = common::run(
        Command::new(&argv[0])
            .args(&argv[1..])
            .arg(&script)
            .env("MAILRUN_URL", &url)
            .env("MAILRUN_RUNNER_ID", &runner.id)
            .env("MAILRUN_KEY_ID", &runner.key.key_id)
            .env("MAILRUN_KEY", runner.key.secret_hex())
            .env("MAILRUN_WSDL", Path::new(&wsdl)),
    );
    let stdout = common::stdout(&out);
    assert!(
        out.status.success(),
        "the {language} example failed:\n{stdout}\n{}\n{}",
        common::stderr(&out),
        dispatcher.error_log()
    );
    assert!(stdout.contains(": 3 messages"), "{stdout}");
    assert!(stdout.contains("acknowledged 3"), "{stdout}");
    // Its report was recorded like any runner's, and the messages are queued again.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM mailrun.delivery_attempts
              WHERE runner_id = '{}' AND outcome = 'not_attempted'",
            runner.id
        )),
        3
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"),
        3
    );
}

#[test]
fn php_example_runs_against_dispatch_cgi() {
    run_example("php", "runner.php");
}

#[test]
fn perl_example_runs_against_dispatch_cgi() {
    run_example("perl", "runner.pl");
}

#[test]
fn python_example_runs_against_dispatch_cgi() {
    run_example("python", "runner.py");
}
