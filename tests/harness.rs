//! The harness itself works: the private cluster starts and hands out fresh databases.
mod common;

#[test]
fn private_cluster_gives_fresh_databases() {
    let cluster = common::cluster();
    let a = cluster.fresh_db("harness_a");
    let b = cluster.fresh_db("harness_b");
    assert_ne!(a, b);
    let mut client = postgres::Client::connect(&a, postgres::NoTls).expect("connect");
    let row = client.query_one("SELECT current_database()", &[]).unwrap();
    let name: String = row.get(0);
    assert!(a.ends_with(&name));
}
