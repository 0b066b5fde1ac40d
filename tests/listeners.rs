//! Every listener of a node (gRPC, TAXII, metrics) caps the connections one
//! caller may hold; callers are counted by address until their certificate
//! is verified and by that certificate after, so parties sharing one
//! address each get their own allowance.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Cluster, FAST_NORMS};
use tokio::io::AsyncReadExt;

/// Opens `n` silent connections to `addr` and returns how many the node
/// closed at once and how many it holds open.
async fn silent_connections(addr: SocketAddr, n: usize) -> (usize, Vec<tokio::net::TcpStream>) {
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => held.push(s),
        }
    }
    (closed, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_closes_silent_connections_over_the_per_address_cap() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.connections_per_address = 3;
        config.taxii = Some("127.0.0.1:0".parse().unwrap());
        config.metrics = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let running = c.nodes[0].as_ref().unwrap();
    let listeners = [
        ("gRPC", running.addr),
        ("TAXII", running.taxii_addr.unwrap()),
        ("metrics", running.metrics_addr.unwrap()),
    ];
    for (name, addr) in listeners {
        let (closed, held) = silent_connections(addr, 8).await;
        assert!(held.len() <= 3, "{name}: {} silent connections held open", held.len());
        assert!(closed >= 5, "{name}: only {closed} of 8 closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_behind_one_address_each_get_their_own_allowance() {
    // Four parties on 127.0.0.1, each allowed three connections per address:
    // counted by address, a node's three peers and the test's operator
    // client would be one too many.
    let ids = ["PER", "CHL", "ARG", "BRA"];
    let c = Cluster::start_with(&ids, FAST_NORMS, |config| config.connections_per_address = 3).await;
    let mut sent = Vec::new();
    for from in 0..ids.len() {
        let to: Vec<&str> = ids.iter().copied().filter(|p| *p != ids[from]).collect();
        sent.push((from, c.send(from, common::notice(&to, "to everyone")).await));
    }
    c.eventually_advancing(60, common::RETRY_MAX, "every notice receipted by every peer", |c| {
        sent.iter().all(|(from, id)| {
            c.node(*from)
                .read(|db| hotline::state::receipts(db, id))
                .is_ok_and(|r| r.len() == ids.len() - 1)
        })
    })
    .await;
    // Silent connections from the same address are still capped.
    let (closed, held) = silent_connections(c.nodes[0].as_ref().unwrap().addr, 6).await;
    assert!(held.len() <= 3 && closed >= 3, "{} held, {closed} closed", held.len());
}
