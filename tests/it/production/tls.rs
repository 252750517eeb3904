//! TLS against the TLS node of `scripts/brokers.sh` (127.0.0.1:5691, a test CA made at its
//! start, a server certificate for `localhost` only, a client certificate for the user
//! `amqp-rpc-client` that logs in with EXTERNAL).

use std::time::{Duration, Instant};

use amqp_rpc::{RpcError, Transport, TransportError};

use super::support::{Node, ServiceClient, connect, extra_node_or_skip, quick_config, serve};
use crate::common::unique;

/// Where the TLS node and its certificates are.
struct Tls {
    port: String,
    plain_port: String,
    dir: String,
    node: String,
}

impl Tls {
    /// A URL of the TLS node through `host` (`localhost` matches its certificate) with
    /// `query`.
    fn url(&self, host: &str, query: &str) -> String {
        format!("rabbit://guest:guest@{host}:{}/?{query}", self.port)
    }

    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    fn verified(&self) -> String {
        format!("ssl=1&ssl_ca_file={}", self.file("ca.pem"))
    }

    /// `rabbitmqctl list_connections <item>` on the TLS node, one line per connection.
    fn connections(&self, item: &str) -> Vec<String> {
        super::support::rabbitmqctl(&[
            "-n",
            &self.node,
            "list_connections",
            item,
            "--no-table-headers",
        ])
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
    }
}

macro_rules! tls_or_skip {
    () => {
        Tls {
            port: extra_node_or_skip!("AMQP_RPC_TLS_PORT"),
            plain_port: extra_node_or_skip!("AMQP_RPC_TLS_PLAIN_PORT"),
            dir: extra_node_or_skip!("AMQP_RPC_TLS_DIR"),
            node: extra_node_or_skip!("AMQP_RPC_TLS_NODE"),
        }
    };
}

/// Connecting to `url` fails, in time, with an error whose text has `expected`.
async fn refused(url: &str, expected: &str) {
    let config = quick_config().with_connect_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let err = Transport::from_url_with_config(url, config)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, RpcError::Transport(TransportError::Unreachable { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(expected), "{expected:?} not in: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn a_trusted_broker_is_reached_over_tls_and_serves_calls() {
    let tls = tls_or_skip!();
    let url = tls.url("localhost", &tls.verified());
    let topic = unique("tls");
    let server_transport = connect(&url, quick_config()).await;
    let _server = serve(&server_transport, &topic, &Node::new("s1")).await;
    let transport = connect(&url, quick_config()).await;
    let client = ServiceClient::new(&transport, &topic).with_timeout(Duration::from_secs(10));
    assert_eq!(client.whoami().await.unwrap(), "s1");
    assert_eq!(client.sleep(5).await.unwrap(), 5);
    // The broker sees them as TLS connections.
    let ssl = tls.connections("ssl");
    assert!(
        ssl.iter().filter(|s| *s == "true").count() >= 2,
        "connections' ssl column: {ssl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn a_broker_certificate_from_another_authority_is_refused() {
    let tls = tls_or_skip!();
    let query = format!("ssl=1&ssl_ca_file={}", tls.file("other-ca.pem"));
    refused(&tls.url("localhost", &query), "UnknownIssuer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn a_broker_certificate_for_another_host_name_is_refused() {
    let tls = tls_or_skip!();
    // The certificate names `localhost` only, not 127.0.0.1.
    refused(
        &tls.url("127.0.0.1", &tls.verified()),
        "certificate not valid for name",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn tls_never_falls_back_to_plain_text() {
    let tls = tls_or_skip!();
    // TLS to the plain port: the handshake fails; nothing is sent in clear.
    let url = format!(
        "rabbit://guest:guest@localhost:{}/?{}",
        tls.plain_port,
        tls.verified()
    );
    refused(&url, "TLS handshake").await;
    // Files of TLS settings without `ssl` are refused, not ignored.
    let query = format!("ssl_ca_file={}", tls.file("ca.pem"));
    let err = Transport::from_url(&tls.url("localhost", &query))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Transport(TransportError::Tls { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn a_client_certificate_logs_in_with_external() {
    let tls = tls_or_skip!();
    let name = unique("external");
    let query = format!(
        "{}&ssl_cert_file={}&ssl_key_file={}&rabbit_login_method=EXTERNAL",
        tls.verified(),
        tls.file("client.pem"),
        tls.file("client.key")
    );
    // The URL's user name and password play no part with EXTERNAL.
    let url = format!("rabbit://nobody:wrong@localhost:{}/?{query}", tls.port);
    let transport = connect(&url, quick_config()).await;
    let topic = name.clone();
    let _server = serve(&transport, &topic, &Node::new("s1")).await;
    let client = ServiceClient::new(&transport, &topic);
    assert_eq!(client.whoami().await.unwrap(), "s1");
    let users = tls.connections("user");
    assert!(users.iter().any(|u| u == "amqp-rpc-client"), "{users:?}");

    // EXTERNAL without a client certificate is a settings error, found before connecting.
    let url = tls.url(
        "localhost",
        &format!("{}&rabbit_login_method=EXTERNAL", tls.verified()),
    );
    let err = Transport::from_url(&url).await.unwrap_err();
    assert!(
        matches!(err, RpcError::Transport(TransportError::Tls { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn a_python_client_over_tls_calls_a_rust_server_over_tls() {
    let tls = tls_or_skip!();
    let url = tls.url("localhost", &tls.verified());
    let topic = unique("tls-py");
    let server_transport = connect(&url, quick_config()).await;
    let _server = serve(&server_transport, &topic, &Node::new("rust")).await;
    let python = crate::common::peer::PythonPeer::start(&url).await;
    let answer = python
        .request(serde_json::json!({
            "cmd": "call", "topic": topic, "method": "whoami", "timeout": 30,
        }))
        .await;
    assert_eq!(answer, Ok(serde_json::json!("rust")));
    python.quit().await;
}
