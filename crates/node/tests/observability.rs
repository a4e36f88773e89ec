//! `/health` and `/metrics` over real HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_node::observability::{HealthCell, METRIC_FINALIZED_HEIGHT, Telemetry, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_and_metrics_report_the_node() {
    let telemetry = Telemetry::install().unwrap();
    let health = HealthCell::new(3, [7u8; 32]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(health.clone(), Some(telemetry));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, body) = get(address, "/health").await;
    assert_eq!(status, 503, "a starting node is not ready: {body}");
    assert!(body.contains("\"status\":\"starting\""), "{body}");

    health.applied(42, &[9u8; 32]);
    let (status, body) = get(address, "/health").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["index"], 3);
    assert_eq!(json["height"], 42);
    assert_eq!(json["state_root"], hex::encode([9u8; 32]));
    assert_eq!(json["network_id"], hex::encode([7u8; 32]));

    let (status, body) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains(&format!("{METRIC_FINALIZED_HEIGHT} 42")), "{body}");

    health.halt("state root differs from the network's at height 43".into());
    let (status, body) = get(address, "/health").await;
    assert_eq!(status, 503);
    assert!(body.contains("\"status\":\"halted\"") && body.contains("height 43"), "{body}");
    let (status, _) = get(address, "/nonexistent").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn metrics_without_a_recorder_say_so() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(HealthCell::new(1, [0u8; 32]), None)).await.unwrap() });
    let (status, body) = get(address, "/metrics").await;
    assert_eq!(status, 404);
    assert!(body.contains("not enabled"), "{body}");
}
