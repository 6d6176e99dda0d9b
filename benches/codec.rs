//! Criterion micro-benchmarks: JobRun encode/decode (500 messages of about 2 KB) and
//! request signing/verification over that body. `cargo bench --bench codec`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mailrun::protocol::codec;
use mailrun::protocol::limits::Limits;
use mailrun::protocol::sign::{self, SigningKey};
use mailrun::protocol::types::{Body, Header, JobRun, OutboundMessage, Security, SmtpAccount};

/// A batch shaped like the dispatcher's: every message with its account and a text body.
fn job_run(messages: usize, body_bytes: usize) -> JobRun {
    let line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\n";
    let text: String = line.repeat(body_bytes / line.len() + 1)[..body_bytes].to_string();
    JobRun {
        job_run_id: "7f1c0c56-3f5e-4d8e-9a39-0f6f7c2b9a10".into(),
        lease_seconds: 600,
        acknowledged: Vec::new(),
        messages: (0..messages)
            .map(|i| OutboundMessage {
                id: i as i64 + 1,
                lease_token: format!("00000000-0000-4000-8000-{i:012}"),
                message_id_header: format!("<{i}.bench@example.com>"),
                account: SmtpAccount {
                    name: "bench".into(),
                    host: "smtp.example.com".into(),
                    port: 587,
                    security: Security::StartTls,
                    username: Some("mailer".into()),
                    password: Some("not-a-real-password".into()),
                    max_connections: None,
                },
                from: "News <news@example.com>".into(),
                reply_to: None,
                to: vec![format!("user{i}@example.org")],
                cc: Vec::new(),
                bcc: Vec::new(),
                subject: format!("Your weekly digest #{i} & more <news>"),
                text_body: Some(text.clone()),
                html_body: None,
                headers: vec![Header {
                    name: "List-Unsubscribe".into(),
                    value: format!("<https://example.com/u/{i}>"),
                }],
                attachments: Vec::new(),
            })
            .collect(),
    }
}

fn bench_codec(c: &mut Criterion) {
    let body = Body::JobRun(job_run(500, 2048));
    let encoded = codec::encode(&body);
    let mut group = c.benchmark_group("jobrun_500x2KB");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| b.iter(|| codec::encode(&body)));
    group.bench_function("decode", |b| {
        b.iter(|| codec::decode_with(&encoded, &Limits::RESPONSE).expect("decodes"))
    });
    group.finish();
}

fn bench_sign(c: &mut Criterion) {
    let key = SigningKey::generate("bench");
    let keys = vec![key.clone()];
    let body = codec::encode(&Body::JobRun(job_run(500, 2048)));
    let action = "urn:mailrun:soap:v1#JobRun";
    let path = "/cgi-bin/dispatch-cgi";
    let mut group = c.benchmark_group("sign_jobrun_500x2KB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sign", |b| {
        b.iter(|| sign::sign(&key, "RESPONSE", path, action, &body))
    });
    group.bench_function("verify", |b| {
        b.iter_batched(
            || sign::sign(&key, "RESPONSE", path, action, &body),
            |sig| {
                sign::verify(&keys, &sig, "RESPONSE", path, action, &body, sig.timestamp)
                    .expect("verifies")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    // A small request (JobRunRequest without results): the fixed per-request cost.
    c.bench_function("sign_small_request", |b| {
        b.iter(|| sign::sign(&key, "POST", path, action, b"<small/>"))
    });
}

criterion_group!(benches, bench_codec, bench_sign);
criterion_main!(benches);
