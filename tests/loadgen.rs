//! Smoke test of the load generator against an in-process server: the tool counts correctly.

#[allow(dead_code)]
#[path = "../examples/loadgen.rs"]
mod loadgen;

mod common;

use common::{Opts, spawn_server, test_limits};
use tlschat::config::Limits;

/// A server for the load generator's users.
async fn server() -> common::TestServer {
    spawn_server(Opts {
        users: vec![],
        limits: Limits {
            max_prelogin_per_ip: 1000,
            max_connections_per_ip: 1000,
            ..test_limits()
        },
        ..Opts::default()
    })
    .await
}

fn common_for(server: &common::TestServer, irc_port: Option<u16>) -> loadgen::Common {
    loadgen::Common {
        port: server.addr.port(),
        db: server.dir.path().join("users.db"),
        password: "benchpass".into(),
        server_pid: Some(std::process::id()),
        conc: 8,
        max_time: 30,
        also_ports: Vec::new(),
        also_pids: Vec::new(),
        irc_port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_scenario_delivers_everything_in_order() {
    let server = server().await;
    let common = common_for(&server, None);
    let report = loadgen::fanout(&common, 6, 3, 200, 0.0, 64, 10)
        .await
        .unwrap();
    assert_eq!(report.expected, 3 * 200 * 5);
    assert_eq!(report.received, report.expected, "{}", report.json);
    assert_eq!(report.order_violations, 0);
    assert!(report.json.contains("\"lost\":0"), "{}", report.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_to_irc_receivers_delivers_everything_in_order() {
    let server = server().await;
    let common = common_for(&server, Some(server.irc_addr.port()));
    let report = loadgen::fanout(&common, 6, 3, 200, 0.0, 64, 10)
        .await
        .unwrap();
    assert_eq!(report.received, report.expected, "{}", report.json);
    assert_eq!(report.order_violations, 0);
}
