//! The SOAP contract: the examples in protocol/ round-trip through the codec, every
//! envelope the codec emits validates against the XSD (xmllint), zeep builds requests
//! from the WSDLs alone that the codec decodes (and parses what the codec emits), and
//! hostile inputs get the precise fault reason.
//!
//! Needs xmllint (libxml2-utils) and python3 with zeep: run scripts/test-setup.sh.
//! `MAILRUN_BLESS=1 cargo test --test protocol` rewrites protocol/examples/.

mod samples;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mailrun::protocol::codec::{self, decode, decode_with, encode, Limits};
use mailrun::protocol::*;
use samples::*;

fn protocol_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol")
}

fn examples_dir() -> PathBuf {
    protocol_dir().join("examples")
}

fn reason_of(input: &[u8], limits: &Limits) -> Fault {
    match decode_with(input, limits) {
        Ok(body) => panic!("decoded unexpectedly: {body:?}"),
        Err(fault) => fault,
    }
}

#[track_caller]
fn assert_fault(input: impl AsRef<[u8]>, reason: FaultReason, message_part: &str) {
    let fault = reason_of(input.as_ref(), &Limits::default());
    assert_eq!(fault.reason, reason, "{fault}");
    assert!(
        fault.message.contains(message_part),
        "fault message {:?} lacks {message_part:?}",
        fault.message
    );
}

fn envelope(payload: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{SOAP_ENV_NAMESPACE}\" \
         xmlns:m=\"{NAMESPACE}\"><soap:Body>{payload}</soap:Body></soap:Envelope>"
    )
}

// ------------------------------------------------------------------ round trips

#[test]
fn generated_bodies_round_trip() {
    for (name, body) in sample_bodies() {
        let xml = encode(&body);
        let back = decode(&xml)
            .unwrap_or_else(|f| panic!("{name}: {f}\n{}", String::from_utf8_lossy(&xml)));
        assert_eq!(back, body, "{name}");
        assert_eq!(encode(&back), xml, "{name}: re-encoding differs");
    }
}

#[test]
fn examples_are_current() {
    let dir = examples_dir();
    let bless = mailrun::cli::env_switch("MAILRUN_BLESS").unwrap_or_else(|e| panic!("{e}"));
    for (file, body) in examples() {
        let path = dir.join(&file);
        let expected = encode(&body);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &expected).unwrap();
            continue;
        }
        let actual = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (MAILRUN_BLESS=1 cargo test --test protocol writes it)",
                path.display()
            )
        });
        assert!(
            actual == expected,
            "{file} is stale: run MAILRUN_BLESS=1 cargo test --test protocol"
        );
    }
}

#[test]
fn every_example_file_round_trips() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("protocol/examples") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let body = decode(&bytes).unwrap_or_else(|f| panic!("{}: {f}", path.display()));
        let again = decode(&encode(&body)).unwrap();
        assert_eq!(again, body, "{}", path.display());
        seen += 1;
    }
    assert_eq!(
        seen,
        examples().len(),
        "unexpected files in protocol/examples"
    );
}

#[test]
fn every_fault_reason_has_an_example() {
    for reason in FaultReason::ALL {
        let path = examples_dir().join(format!("fault-{}.xml", kebab(reason.as_str())));
        let body = decode(&std::fs::read(&path).unwrap()).unwrap();
        let Body::Fault(fault) = body else {
            panic!("{} is not a fault", path.display())
        };
        assert_eq!(fault.reason, reason);
        assert_eq!(fault.code, reason.code());
    }
}

/// `heldJobRuns` carries at most MAX_HELD_JOB_RUNS ids; a runner holding more omits it.
#[test]
fn held_job_runs_are_bounded() {
    let mut request = job_run_request();
    request.held_job_runs = Some(
        (0..=limits::MAX_HELD_JOB_RUNS)
            .map(|i| format!("jr-{i}"))
            .collect(),
    );
    assert_fault(
        encode(&Body::JobRunRequest(request.clone())),
        FaultReason::InvalidValue,
        "lists more than 1000 batches",
    );
    request.held_job_runs = Some(Vec::new());
    let xml = encode(&Body::JobRunRequest(request.clone()));
    assert!(String::from_utf8_lossy(&xml).contains("<m:heldJobRuns/>"));
    assert_eq!(decode(&xml).unwrap(), Body::JobRunRequest(request));
}

#[test]
fn soap_actions_name_the_operation() {
    for (_, body) in examples() {
        let action = codec::soap_action(&body);
        assert_eq!(
            action,
            format!("urn:mailrun:soap:v1#{}", codec::operation_name(&body))
        );
    }
    let fault = Body::Fault(fault(FaultReason::Internal));
    assert_eq!(codec::soap_action(&fault), "urn:mailrun:soap:v1#Fault");
}

#[test]
fn carriage_returns_and_markup_survive() {
    let mut run = job_run();
    run.messages[0].text_body = Some("a\r\nb\rc\n]]>\u{0}d".into());
    let back = decode(&encode(&Body::JobRun(run))).unwrap();
    let Body::JobRun(back) = back else { panic!() };
    // NUL cannot be carried by XML 1.0 at all; the encoder substitutes U+FFFD.
    assert_eq!(
        back.messages[0].text_body.as_deref(),
        Some("a\r\nb\rc\n]]>\u{FFFD}d")
    );
}

#[test]
fn large_batch_decodes_with_default_limits_only() {
    let mut run = job_run();
    let mut message = message_minimal();
    message.text_body = Some("x".repeat(50 * 1024));
    run.messages = (0..1000)
        .map(|i| {
            let mut m = message.clone();
            m.id = i;
            m
        })
        .collect();
    let xml = encode(&Body::JobRun(run.clone()));
    assert!(xml.len() > 50 * 1024 * 1000);
    assert_eq!(decode(&xml).unwrap(), Body::JobRun(run));
    let fault = reason_of(&xml, &Limits::for_request());
    assert_eq!(fault.reason, FaultReason::TooLarge);
}

// ------------------------------------------------------------------ xmllint

fn xmllint() -> Command {
    let found = Command::new("xmllint")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "xmllint not found (apt package libxml2-utils): run scripts/test-setup.sh"
    );
    Command::new("xmllint")
}

/// Validates files against envelope-check.xsd in one xmllint call.
fn validate(files: &[PathBuf]) -> std::process::Output {
    xmllint()
        .arg("--noout")
        .arg("--schema")
        .arg(protocol_dir().join("envelope-check.xsd"))
        .args(files)
        .output()
        .expect("run xmllint")
}

#[test]
fn schemas_and_wsdls_are_well_formed_and_compile() {
    let dir = protocol_dir();
    let files: Vec<PathBuf> = [
        "mailrun.xsd",
        "soap-envelope.xsd",
        "envelope-check.xsd",
        "dispatcher.wsdl",
        "runner.wsdl",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let out = xmllint().arg("--noout").args(&files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compiling a schema is a side effect of validating against it; a FaultDetail
    // document validated against mailrun.xsd alone proves it compiles standalone.
    let tmp = tempfile::tempdir().unwrap();
    let doc = tmp.path().join("detail.xml");
    std::fs::write(
        &doc,
        format!("<m:FaultDetail xmlns:m=\"{NAMESPACE}\"><m:reason>Internal</m:reason><m:message>x</m:message></m:FaultDetail>"),
    )
    .unwrap();
    let out = xmllint()
        .arg("--noout")
        .arg("--schema")
        .arg(dir.join("mailrun.xsd"))
        .arg(&doc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_emitted_envelope_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (name, body)) in sample_bodies().into_iter().enumerate() {
        let path = tmp
            .path()
            .join(format!("{i:02}-{}.xml", name.trim_end_matches(".xml")));
        std::fs::write(&path, encode(&body)).unwrap();
        files.push(path);
    }
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        files.push(entry.unwrap().path());
    }
    let out = validate(&files);
    assert!(
        out.status.success(),
        "xmllint refused an envelope the codec emitted:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schema_validation_is_not_vacuous() {
    let tmp = tempfile::tempdir().unwrap();
    let good = String::from_utf8(encode(&Body::JobRun(job_run()))).unwrap();
    let cases = [
        ("enum", good.replacen("starttls", "bogus", 1)),
        ("operation", good.replace("m:JobRun>", "m:JobRunX>")),
        (
            "missing",
            good.replacen("<m:leaseSeconds>600</m:leaseSeconds>", "", 1),
        ),
        (
            "header-crlf",
            good.replacen("autumn-2026", "a&#13;&#10;Bcc: x@y", 1),
        ),
        (
            "port",
            good.replacen("<m:port>587</m:port>", "<m:port>0</m:port>", 1),
        ),
    ];
    for (name, xml) in cases {
        assert_ne!(xml, good, "{name}: mutation did not apply");
        let path = tmp.path().join(format!("{name}.xml"));
        std::fs::write(&path, &xml).unwrap();
        assert!(
            !validate(&[path]).status.success(),
            "{name}: xmllint accepted it"
        );
        assert!(
            decode(xml.as_bytes()).is_err(),
            "{name}: the codec accepted it"
        );
    }
}

// ------------------------------------------------------------------ zeep interop

/// python3 that can import zeep: the test-setup venv first, then PATH.
fn python_with_zeep() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python3");
    for candidate in [venv, PathBuf::from("python3")] {
        let ok = Command::new(&candidate)
            .args(["-c", "import zeep"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return candidate;
        }
    }
    panic!("python3 with zeep not found: run scripts/test-setup.sh");
}

fn run_python(script: &str, stdin: Option<String>) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let mut child = Command::new(python_with_zeep())
        .arg(&script)
        .arg(protocol_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let input = stdin.unwrap_or_default();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the zeep script")
}

#[test]
fn zeep_builds_requests_the_codec_decodes() {
    let built = run_python("zeep_build.py", None);
    let decode_zeep = |name: &str| -> Body {
        let xml = built[name]
            .as_str()
            .unwrap_or_else(|| panic!("zeep did not build {name}"));
        decode_with(xml.as_bytes(), &Limits::for_request())
            .unwrap_or_else(|f| panic!("{name}: {f}\n{xml}"))
    };
    assert_eq!(
        decode_zeep("job-run-request"),
        Body::JobRunRequest(job_run_request())
    );
    let mut minimal = job_run_request();
    minimal.results.clear();
    minimal.held_job_runs = None;
    minimal.config_version = 0;
    assert_eq!(
        decode_zeep("job-run-request-minimal"),
        Body::JobRunRequest(minimal)
    );
    assert_eq!(
        decode_zeep("job-runner-ready"),
        Body::JobRunnerReady(JobRunnerReady {
            runner_id: "runner-eu-1".into(),
            queued: 1342
        })
    );
    let update = |software| {
        Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "runner-eu-1".into(),
            version: 8,
            settings: settings(software),
        })
    };
    assert_eq!(decode_zeep("job-runner-config-update"), update(true));
    assert_eq!(
        decode_zeep("job-runner-config-update-minimal"),
        update(false)
    );
}

#[test]
fn zeep_parses_what_the_codec_emits() {
    let item = |name: &str, service: &str, operation: &str, body: &Body| {
        let status = if matches!(body, Body::Fault(_)) {
            500
        } else {
            200
        };
        serde_json::json!({
            "name": name, "service": service, "operation": operation, "status": status,
            "xml": String::from_utf8(encode(body)).unwrap(),
        })
    };
    let mut items = vec![
        item(
            "job-run",
            "dispatcher",
            "JobRunRequest",
            &Body::JobRun(job_run()),
        ),
        item(
            "job-run-empty",
            "dispatcher",
            "JobRunRequest",
            &Body::JobRun(job_run_empty()),
        ),
        item(
            "ready",
            "runner",
            "JobRunnerReady",
            &Body::JobRunnerReadyResponse(JobRunnerReadyResponse {
                status: ReadyStatus::Busy,
                software_version: "0.1.0".into(),
                config_version: 7,
            }),
        ),
        item(
            "config",
            "runner",
            "JobRunnerConfigUpdate",
            &Body::JobRunnerConfigUpdateResponse(JobRunnerConfigUpdateResponse {
                applied_version: 8,
            }),
        ),
    ];
    for reason in FaultReason::ALL {
        items.push(item(
            reason.as_str(),
            "dispatcher",
            "JobRunRequest",
            &Body::Fault(fault(reason)),
        ));
    }
    let parsed = run_python(
        "zeep_parse.py",
        Some(serde_json::Value::from(items).to_string()),
    );

    let run = &parsed["job-run"]["ok"];
    let expected = job_run();
    assert_eq!(run["jobRunId"], expected.job_run_id.as_str());
    assert_eq!(run["leaseSeconds"], 600);
    assert_eq!(run["acknowledged"]["ack"][1]["leaseToken"], "lt-1041");
    let m = &run["messages"]["message"][0];
    let e = &expected.messages[0];
    assert_eq!(m["id"], e.id);
    assert_eq!(
        m["account"]["password"],
        e.account.password.as_deref().unwrap()
    );
    assert_eq!(m["account"]["security"], "starttls");
    assert_eq!(m["subject"], e.subject.as_str());
    assert_eq!(m["textBody"], e.text_body.as_deref().unwrap());
    assert_eq!(m["to"][1], e.to[1].as_str());
    assert_eq!(m["header"][1]["value"], e.headers[1].value.as_str());
    assert_eq!(
        m["attachment"][0]["data"],
        hex::encode(&e.attachments[0].data)
    );
    assert_eq!(run["messages"]["message"].as_array().unwrap().len(), 2);

    // zeep reads empty elements as None.
    assert!(parsed["job-run-empty"]["ok"]["messages"].is_null());
    assert_eq!(parsed["ready"]["ok"]["status"], "busy");
    assert_eq!(parsed["ready"]["ok"]["configVersion"], 7);
    // zeep unwraps a response with a single child to its value.
    assert_eq!(parsed["config"]["ok"], 8);
    for reason in FaultReason::ALL {
        let f = &parsed[reason.as_str()]["fault"];
        let code = match reason.code() {
            FaultCode::Client => "soap:Client",
            FaultCode::Server => "soap:Server",
        };
        assert_eq!(f["code"], code, "{reason:?}");
        assert_eq!(f["reason"], reason.as_str());
        assert_eq!(f["message"], fault(reason).message.as_str());
    }
}

// ------------------------------------------------------------------ hostile input

#[test]
fn doctype_with_system_entity_is_refused() {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n{}",
        envelope("<m:JobRunnerReady><m:runnerId>&xxe;</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>")
            .split_once('\n')
            .unwrap()
            .1
    );
    assert_fault(xml, FaultReason::DoctypeRefused, "DOCTYPE");
}

#[test]
fn billion_laughs_is_refused() {
    let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push(']');
    dtd.push('>');
    let xml = format!("{dtd}{}", envelope("<m:JobRunnerReady><m:runnerId>&lol9;</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>").split_once('\n').unwrap().1);
    assert_fault(xml, FaultReason::DoctypeRefused, "DOCTYPE");
}

#[test]
fn undefined_entity_without_doctype_is_malformed() {
    assert_fault(
        envelope("<m:JobRunnerReady><m:runnerId>&lol9;</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>"),
        FaultReason::MalformedXml,
        "lol9",
    );
}

#[test]
fn deep_nesting_fails_fast() {
    let depth = 100_000;
    let mut xml = String::with_capacity(depth * 8);
    xml.push_str(&format!(
        "<soap:Envelope xmlns:soap=\"{SOAP_ENV_NAMESPACE}\"><soap:Body>"
    ));
    for _ in 0..depth {
        xml.push_str("<a>");
    }
    for _ in 0..depth {
        xml.push_str("</a>");
    }
    xml.push_str("</soap:Body></soap:Envelope>");
    assert_fault(&xml, FaultReason::TooDeep, "deeper than 32");
    // Unclosed, too: refused at depth 33, never reaching the end.
    assert_fault(
        &xml[..xml.len() / 2],
        FaultReason::TooDeep,
        "deeper than 32",
    );
}

#[test]
fn oversized_body_is_refused_before_parsing() {
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::for_request()
    };
    let xml = envelope(&format!(
        "<m:JobRunnerReady><m:runnerId>{}</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>",
        "r".repeat(2000)
    ));
    let fault = reason_of(xml.as_bytes(), &limits);
    assert_eq!(fault.reason, FaultReason::TooLarge);
    assert!(
        fault.message.contains("limit is 1000 bytes"),
        "{}",
        fault.message
    );
    // Not even well-formedness is looked at.
    let fault = reason_of(&vec![b'<'; 1001], &limits);
    assert_eq!(fault.reason, FaultReason::TooLarge);
}

#[test]
fn oversized_text_is_refused() {
    let xml = envelope(&format!(
        "<m:JobRunRequest><m:runnerId>{}</m:runnerId></m:JobRunRequest>",
        "r".repeat(70 * 1024)
    ));
    let fault = reason_of(xml.as_bytes(), &Limits::for_request());
    assert_eq!(fault.reason, FaultReason::TooLarge);
    assert!(
        fault.message.contains("JobRunRequest/runnerId"),
        "{}",
        fault.message
    );
}

#[test]
fn too_many_elements_and_attributes() {
    let limits = Limits {
        max_elements: 100,
        ..Limits::for_request()
    };
    let results = "<m:result/>".repeat(200);
    let xml = envelope(&format!(
        "<m:JobRunRequest><m:results>{results}</m:results></m:JobRunRequest>"
    ));
    assert_eq!(
        reason_of(xml.as_bytes(), &limits).reason,
        FaultReason::TooManyElements
    );

    let attrs: String = (0..40).map(|i| format!(" a{i}=\"x\"")).collect();
    let xml = envelope(&format!("<m:JobRunnerReady{attrs}/>"));
    let fault = reason_of(xml.as_bytes(), &Limits::for_request());
    assert_eq!(fault.reason, FaultReason::TooManyElements);
    assert!(fault.message.contains("attributes"), "{}", fault.message);
}

#[test]
fn unknown_operation_and_wrong_namespace() {
    assert_fault(
        envelope("<m:JobCancel/>"),
        FaultReason::UnknownOperation,
        "<JobCancel>",
    );
    assert_fault(
        envelope("<x:JobRunnerReady xmlns:x=\"urn:mailrun:soap:v0\"/>"),
        FaultReason::WrongNamespace,
        "urn:mailrun:soap:v0",
    );
    assert_fault(
        "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\"><soap:Body/></soap:Envelope>",
        FaultReason::WrongNamespace,
        "SOAP 1.2",
    );
    assert_fault(
        envelope(
            "<m:JobRunnerReady><runnerId>r</runnerId><m:queued>1</m:queued></m:JobRunnerReady>",
        ),
        FaultReason::WrongNamespace,
        "<runnerId> in JobRunnerReady",
    );
}

#[test]
fn missing_required_field_is_named() {
    assert_fault(
        envelope("<m:JobRunRequest><m:capacity>1</m:capacity><m:softwareVersion>1</m:softwareVersion><m:configVersion>0</m:configVersion></m:JobRunRequest>"),
        FaultReason::MissingField,
        "missing <runnerId> in JobRunRequest",
    );
    let xml = String::from_utf8(encode(&Body::JobRunRequest(job_run_request()))).unwrap();
    let xml = xml.replacen("<m:leaseToken>lt-1041</m:leaseToken>", "", 1);
    assert_fault(
        xml,
        FaultReason::MissingField,
        "missing <leaseToken> in JobRunRequest/results/result[2]",
    );
    let xml = String::from_utf8(encode(&Body::JobRun(job_run_empty()))).unwrap();
    assert_fault(
        xml.replace("<m:messages/>", ""),
        FaultReason::MissingField,
        "missing <messages> in JobRun",
    );
}

#[test]
fn bad_values_are_named_with_the_value() {
    let xml = String::from_utf8(encode(&Body::JobRunRequest(job_run_request()))).unwrap();
    assert_fault(
        xml.replacen(
            "<m:outcome>Deferred</m:outcome>",
            "<m:outcome>Bounced</m:outcome>",
            1,
        ),
        FaultReason::InvalidValue,
        "invalid value for <outcome> in JobRunRequest/results/result[2]: \"Bounced\"",
    );
    assert_fault(
        xml.replacen(
            "<m:capacity>200</m:capacity>",
            "<m:capacity>-3</m:capacity>",
            1,
        ),
        FaultReason::InvalidValue,
        "<capacity> in JobRunRequest: \"-3\" is not an unsigned 32-bit integer",
    );
    assert_fault(
        xml.replacen("2026-11-23T10:33:20Z", "yesterday", 1),
        FaultReason::InvalidValue,
        "<attemptedAt> in JobRunRequest/results/result[1]: \"yesterday\"",
    );
    assert_fault(
        xml.replacen("2026-11-23T10:33:20Z", "2026-11-23T10:33:20", 1),
        FaultReason::InvalidValue,
        "time zone",
    );
    let long = "9".repeat(500);
    let fault = reason_of(
        xml.replacen(
            "<m:capacity>200</m:capacity>",
            &format!("<m:capacity>{long}</m:capacity>"),
            1,
        )
        .as_bytes(),
        &Limits::default(),
    );
    assert_eq!(fault.reason, FaultReason::InvalidValue);
    assert!(
        fault.message.len() < 200,
        "value not truncated: {}",
        fault.message
    );

    let run = String::from_utf8(encode(&Body::JobRun(job_run()))).unwrap();
    assert_fault(
        run.replacen("JVBERi0x", "JVB!Ri0x", 1),
        FaultReason::InvalidValue,
        "<data> in JobRun/messages/message[1]/attachment[1]: is not valid base64",
    );
    assert_fault(
        run.replacen(
            "<m:security>starttls</m:security>",
            "<m:security>ssl</m:security>",
            1,
        ),
        FaultReason::InvalidValue,
        "<security> in JobRun/messages/message[1]/account",
    );
    assert_fault(
        run.replacen("autumn-2026", "x&#13;&#10;Bcc: evil@example.net", 1),
        FaultReason::InvalidValue,
        "line break",
    );
}

#[test]
fn password_never_appears_in_faults() {
    let run = String::from_utf8(encode(&Body::JobRun(job_run()))).unwrap();
    let bad = run.replacen(
        "<m:password>s3cret &lt;&amp;&gt; pass</m:password>",
        &format!("<m:password>{}</m:password>", "s3cret".repeat(300)),
        1,
    );
    let fault = reason_of(bad.as_bytes(), &Limits::default());
    assert_eq!(fault.reason, FaultReason::InvalidValue);
    assert!(!fault.message.contains("s3cret"), "{}", fault.message);
    assert!(!format!("{:?}", job_run()).contains("s3cret"));
}

#[test]
fn unknown_and_duplicate_children_are_refused() {
    let xml = String::from_utf8(encode(&Body::JobRun(job_run()))).unwrap();
    assert_fault(
        xml.replacen("<m:from>", "<m:sender>x</m:sender><m:from>", 1),
        FaultReason::MalformedXml,
        "unexpected element <sender> in JobRun/messages/message[1]",
    );
    assert_fault(
        xml.replacen(
            "<m:leaseSeconds>600</m:leaseSeconds>",
            "<m:leaseSeconds>600</m:leaseSeconds><m:leaseSeconds>1</m:leaseSeconds>",
            1,
        ),
        FaultReason::MalformedXml,
        "duplicate <leaseSeconds> in JobRun",
    );
}

#[test]
fn truncated_document_is_malformed() {
    let xml = encode(&Body::JobRun(job_run()));
    let fault = reason_of(&xml[..xml.len() / 2], &Limits::default());
    assert_eq!(fault.reason, FaultReason::MalformedXml, "{fault}");
    assert_fault(&xml[..0], FaultReason::MalformedXml, "empty");
}

#[test]
fn non_utf8_is_malformed() {
    let mut xml = encode(&Body::JobRunnerReady(JobRunnerReady {
        runner_id: "r".into(),
        queued: 1,
    }));
    let at = xml.windows(1).position(|w| w == b"r").unwrap();
    xml[at] = 0xFF;
    assert_fault(&xml, FaultReason::MalformedXml, "not UTF-8");
    let latin1 = envelope("<m:JobRunnerReady/>").replace("UTF-8", "ISO-8859-1");
    assert_fault(latin1, FaultReason::MalformedXml, "only UTF-8");
}

#[test]
fn processing_instructions_and_control_characters_are_refused() {
    assert_fault(
        envelope("<?evil stuff?><m:JobRunnerReady/>"),
        FaultReason::MalformedXml,
        "processing instruction",
    );
    assert_fault(
        envelope("<m:JobRunnerReady><m:runnerId>&#1;</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>"),
        FaultReason::MalformedXml,
        "character reference",
    );
    assert_fault(
        envelope("<m:JobRunnerReady><m:runnerId>\u{1}</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>"),
        FaultReason::MalformedXml,
        "U+0001",
    );
}

#[test]
fn must_understand_headers_are_refused_others_ignored() {
    let body =
        "<m:JobRunnerReady><m:runnerId>r</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>";
    let with_header = |header: &str| {
        format!(
            "<soap:Envelope xmlns:soap=\"{SOAP_ENV_NAMESPACE}\" xmlns:m=\"{NAMESPACE}\"><soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
        )
    };
    assert!(decode(with_header("<x:Trace xmlns:x=\"urn:x\">1</x:Trace>").as_bytes()).is_ok());
    assert_fault(
        with_header("<x:Auth xmlns:x=\"urn:x\" soap:mustUnderstand=\"1\">1</x:Auth>"),
        FaultReason::InvalidValue,
        "mustUnderstand",
    );
}

#[test]
fn foreign_prefixes_cdata_and_comments_are_fine() {
    let xml = format!(
        "<e:Envelope xmlns:e=\"{SOAP_ENV_NAMESPACE}\"><!-- hi --><e:Body>\n  <JobRunnerReady xmlns=\"{NAMESPACE}\">\
         <runnerId><![CDATA[a<b]]>&amp;c</runnerId><queued> 5 </queued></JobRunnerReady></e:Body></e:Envelope>"
    );
    assert_eq!(
        decode(xml.as_bytes()).unwrap(),
        Body::JobRunnerReady(JobRunnerReady {
            runner_id: "a<b&c".into(),
            queued: 5
        })
    );
}

#[test]
fn foreign_faults_fall_back_by_fault_code() {
    let xml = envelope(
        "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Bad gateway</faultstring></soap:Fault>",
    );
    let Body::Fault(f) = decode(xml.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(
        (f.code, f.reason, f.message.as_str()),
        (FaultCode::Server, FaultReason::Unavailable, "Bad gateway")
    );
}

#[test]
fn hostile_reply_policies_are_refused_with_a_precise_fault() {
    let with_rules = |rules: Vec<ReplyRule>| {
        let mut s = settings(false);
        s.reply_policy = Some(rules);
        encode(&Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "r".into(),
            version: 2,
            settings: s,
        }))
    };
    let refused = |xml: Vec<u8>, expect: &str| {
        let fault = decode_with(&xml, &Limits::for_request()).expect_err(expect);
        assert_eq!(fault.reason, FaultReason::InvalidValue, "{fault}");
        assert!(fault.message.contains(expect), "{fault}");
    };
    let base = reply_policy();

    // Too many rules: counted before any rule is decoded.
    let many: Vec<ReplyRule> = (1..=1001)
        .map(|i| ReplyRule {
            position: i,
            ..base[0].clone()
        })
        .collect();
    refused(with_rules(many.clone()), "holds 1001 rules, at most 1000");
    assert!(decode_with(&with_rules(many[..1000].to_vec()), &Limits::for_request()).is_ok());

    let mut long = base.clone();
    long[4].pattern = Some("a".repeat(1001));
    refused(with_rules(long), "longer than 1000 characters");

    let mut order = base.clone();
    order[1].position = 10;
    refused(with_rules(order), "rule[2]: position 10 does not increase");

    let mut code = base.clone();
    code[0].code = Some("42".into());
    refused(with_rules(code), "rule[1]: code \"42\"");

    let mut bare = base.clone();
    bare[4].pattern = None;
    refused(
        with_rules(bare),
        "needs a code, an enhanced status or a pattern",
    );

    let mut domain = base.clone();
    domain[2].domain = Some("Gmail.COM".into());
    refused(with_rules(domain), "lowercase domain");

    let mut newline = base.clone();
    newline[4].pattern = Some("a\nb".into());
    refused(with_rules(newline), "line break");

    let xml = String::from_utf8(with_rules(base.clone())).unwrap();
    refused(
        xml.replacen("another_account", "bounce", 1).into_bytes(),
        "is not one of retry, another_account, suppress, fail",
    );
    refused(
        xml.replacen(">account<", ">everyone<", 1).into_bytes(),
        "is not one of none, account, domain",
    );
    let fault = decode_with(
        xml.replacen(
            "<m:code>421</m:code>",
            "<m:code>421</m:code><m:note>x</m:note>",
            1,
        )
        .as_bytes(),
        &Limits::for_request(),
    )
    .unwrap_err();
    assert_eq!(fault.reason, FaultReason::MalformedXml, "{fault}");

    // Absent and empty are different: keep the policy vs. no rules.
    let mut none = settings(false);
    none.reply_policy = None;
    let mut empty = settings(false);
    empty.reply_policy = Some(Vec::new());
    for s in [none, empty] {
        let body = Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "r".into(),
            version: 2,
            settings: s,
        });
        assert_eq!(
            decode_with(&encode(&body), &Limits::for_request()).unwrap(),
            body
        );
    }
}

/// The fault examples say what the endpoints say: each message fits a row of
/// protocol/faults.md for its reason.
#[test]
fn examples_follow_the_fault_table() {
    use mailrun::protocol::faults;
    let rows = faults::rows();
    for reason in FaultReason::ALL {
        let fault = samples::fault(reason);
        assert!(
            rows.iter().any(|r| r.reason == reason.as_str()
                && faults::message_matches(&r.message, &fault.message)),
            "{}: {:?} fits no row of protocol/faults.md",
            reason.as_str(),
            fault.message
        );
    }
}
