//! Faults of the `rabbit://` transport on the default broker, in a vhost of the test's own: the
//! broker closing every connection, a cut or stalled network (through the fault-injection
//! proxy), a broker that is away, hosts that never answer, consumers the broker cancels.
//!
//! What the user must see: no call returns later than its timeout + 1 s; calls pending across a
//! loss, and calls made while reconnecting, succeed if the broker is back in time; no cast that
//! returned `Ok` is lost; clients and servers serve again after every fault.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use amqp_rpc::{ConnectionState, RpcError, Transport, TransportError};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use super::support::{
    BROKER_PORT, Load, Node, Pair, ServiceClient, States, Vhost, connect, quick_config, serve,
    wait_state,
};
use crate::common::proxy::FaultProxy;
use crate::common::{test_broker, unique, until};

/// The most a call may overrun its timeout.
const GRACE: Duration = Duration::from_secs(1);

fn broker_address() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], BROKER_PORT))
}

/// Fails unless `elapsed` is within `timeout` + [`GRACE`].
fn assert_bounded(what: &str, elapsed: Duration, timeout: Duration) {
    assert!(
        elapsed <= timeout + GRACE,
        "{what} took {elapsed:?}, more than its timeout {timeout:?} + {GRACE:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_broker_closing_every_connection_is_survived_by_pending_and_new_calls() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let url = vhost.url(BROKER_PORT);
    let pair = Pair::start("faults", &url, &url, quick_config()).await;
    let states = States::record(&pair.transport);
    assert_eq!(pair.client.sleep(1).await.unwrap(), 1);

    // A call whose handler is running when every connection is closed: the server replies on
    // its new connection, into the reply queue the client consumes again.
    // The handler runs 3 s: rabbitmqctl (an Erlang VM starting) has closed every connection
    // before it ends, even on a loaded machine, so the reply does cross the cut.
    let pending = tokio::spawn({
        let client = pair.client.clone();
        async move { client.sleep(3_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cut = Instant::now();
    vhost.close_all_connections();
    assert!(
        !pending.is_finished(),
        "the call ended before the connections were closed ({:?}): the test proves nothing",
        cut.elapsed()
    );
    let answered = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending call must not hang")
        .unwrap();
    assert_eq!(answered.unwrap(), 3_000, "the pending call's result");
    assert!(
        cut.elapsed() < Duration::from_secs(7),
        "{:?}",
        cut.elapsed()
    );
    assert!(states.reconnected(), "the client's connection was lost");
    wait_state(&pair.transport, Duration::from_secs(10), |s| {
        s.is_connected()
    })
    .await;

    // New calls succeed, and the server takes new requests.
    for n in 0..20 {
        assert_eq!(pair.client.sleep(n).await.unwrap(), n);
    }
    pair.client
        .record("after-the-cut".to_owned())
        .await
        .unwrap();
    until("the cast ran", Duration::from_secs(5), || {
        pair.node.times("after-the-cut") == 1
    })
    .await;
    pair.server.stop().await;
    pair.server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn steady_calls_and_casts_lose_nothing_through_repeated_cuts() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let url = vhost.url(BROKER_PORT);
    let pair = Pair::start("steady", &url, &url, quick_config()).await;
    let running = Instant::now();
    let end = running + Duration::from_secs(5);
    let load = tokio::spawn({
        let client = pair.client.clone();
        async move { Load::run(&client, end, end, Duration::from_millis(5)).await }
    });
    for at in [1_500, 3_000] {
        tokio::time::sleep_until((running + Duration::from_millis(at)).into()).await;
        vhost.close_all_connections();
    }
    let load = load.await.unwrap();
    assert_eq!(load.failures, 0, "failed calls or casts");
    assert!(load.confirmed.len() > 100, "the load ran");
    // Every confirmed cast ran, and ran once: the broker redelivered what the server had not
    // acknowledged, clients sent again what the broker had not confirmed, and the server's
    // duplicate check dropped the copies.
    load.assert_every_cast_ran_once(&pair.node).await;
    pair.server.stop().await;
    pair.server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_cut_network_is_survived_by_client_and_server() {
    let _ = test_broker!();
    let log = crate::common::log::capture_everywhere();
    let vhost = Vhost::new();
    let proxy = FaultProxy::start(broker_address()).await;
    let url = vhost.url(proxy.port());
    let pair = Pair::start("cut", &url, &url, quick_config()).await;
    assert_eq!(pair.client.sleep(1).await.unwrap(), 1);

    let pending = tokio::spawn({
        let client = pair.client.clone();
        async move { client.sleep(1_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = proxy.accepted();
    proxy.cut();
    let answered = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending call must not hang")
        .unwrap();
    assert_eq!(answered.unwrap(), 1_000);
    // Both transports connected again through the proxy.
    until(
        "both transports reconnected",
        Duration::from_secs(5),
        || proxy.accepted() >= accepted + 2,
    )
    .await;
    assert_eq!(pair.client.whoami().await.unwrap(), "s1");
    // Each transport told of the loss and of the restored connection, as connection events.
    let host = format!("@127.0.0.1:{} ", proxy.port());
    for event in ["connected", "lost", "reconnecting", "restored"] {
        let lines: Vec<String> = log
            .lines_with(&format!("event=\"{event}\" host="))
            .into_iter()
            .filter(|line| line.contains(" amqp_rpc::connection: ") && line.contains(&host))
            .filter(|line| line.contains(&format!("vhost=\"{}\"", vhost.0)))
            .collect();
        assert!(lines.len() >= 2, "{event}: {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_reply_on_its_way_when_the_connection_is_cut_still_reaches_the_caller() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let proxy = FaultProxy::start(broker_address()).await;
    let (direct, proxied) = (vhost.url(BROKER_PORT), vhost.url(proxy.port()));
    let pair = Pair::start("on-its-way", &direct, &proxied, quick_config()).await;
    assert_eq!(pair.client.sleep(1).await.unwrap(), 1);

    // The request reaches the server; then the client's network stalls, so that the broker
    // sends the reply into a connection that is cut before the client reads it.
    let pending = tokio::spawn({
        let client = pair.client.clone();
        async move { client.sleep(600).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.stall();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    proxy.cut();
    proxy.heal();
    let answered = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the reply was lost with the connection")
        .unwrap();
    eprintln!("ANSWERED {:?} at {:?}", answered, std::time::Instant::now());
    assert_eq!(answered.unwrap(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_stalled_network_never_holds_a_call_or_cast_past_its_timeout() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let proxy = FaultProxy::start(broker_address()).await;
    let config = quick_config().with_heartbeat_timeout_threshold(Duration::from_secs(2));
    let (direct, proxied) = (vhost.url(BROKER_PORT), vhost.url(proxy.port()));
    let pair = Pair::start("stall", &direct, &proxied, config).await;
    assert_eq!(pair.client.sleep(1).await.unwrap(), 1);

    proxy.stall();
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = pair
        .client
        .clone()
        .with_timeout(timeout)
        .sleep(1)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_retryable());
    assert_bounded("a call on a stalled network", started.elapsed(), timeout);

    let timeout = Duration::from_millis(1_500);
    let started = Instant::now();
    let err = pair
        .client
        .clone()
        .with_timeout(timeout)
        .record("stalled".to_owned())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Transport(TransportError::DeliveryFailed { .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_bounded("a cast on a stalled network", started.elapsed(), timeout);

    // The missed heartbeats (2 s threshold) tell the transport that the connection is dead.
    wait_state(&pair.transport, Duration::from_secs(10), |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    proxy.heal();
    wait_state(
        &pair.transport,
        Duration::from_secs(10),
        ConnectionState::is_connected,
    )
    .await;
    assert_eq!(pair.client.whoami().await.unwrap(), "s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn calls_made_while_the_broker_is_away_wait_for_it_within_their_timeout() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let proxy = FaultProxy::start(broker_address()).await;
    let (direct, proxied) = (vhost.url(BROKER_PORT), vhost.url(proxy.port()));
    let pair = Pair::start("away", &direct, &proxied, quick_config()).await;
    assert_eq!(pair.client.sleep(1).await.unwrap(), 1);

    // The broker goes away: connections cut, new ones refused.
    proxy.refuse();
    proxy.cut();
    wait_state(&pair.transport, Duration::from_secs(5), |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;

    // A call whose timeout ends first fails in time, as a timeout.
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = pair
        .client
        .clone()
        .with_timeout(timeout)
        .whoami()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_bounded(
        "a call while the broker is away",
        started.elapsed(),
        timeout,
    );

    // A cast told not to retry fails at once; one that may retry gives up at its timeout.
    let started = Instant::now();
    let err = pair
        .client
        .clone()
        .with_retry(Some(0))
        .record("once".to_owned())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Transport(TransportError::DeliveryFailed { attempts: 1, .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let err = pair
        .client
        .clone()
        .with_timeout(timeout)
        .record("later".to_owned())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_bounded(
        "a cast while the broker is away",
        started.elapsed(),
        timeout,
    );

    // A call made now, with time enough, succeeds once the broker is back.
    let waiting = tokio::spawn({
        let client = pair.client.clone().with_timeout(Duration::from_secs(20));
        async move { client.whoami().await }
    });
    let cast = tokio::spawn({
        let client = pair.client.clone().with_timeout(Duration::from_secs(20));
        async move { client.record("waited".to_owned()).await }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!waiting.is_finished() && !cast.is_finished());
    proxy.heal();
    let answered = tokio::time::timeout(Duration::from_secs(20), waiting).await;
    assert_eq!(answered.unwrap().unwrap().unwrap(), "s1");
    tokio::time::timeout(Duration::from_secs(20), cast)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    until("the waiting cast ran", Duration::from_secs(5), || {
        pair.node.times("waited") == 1
    })
    .await;
    // Casts that failed were not sent.
    assert_eq!(pair.node.times("once") + pair.node.times("later"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn connecting_is_bounded_per_host_and_the_error_names_every_host_tried() {
    let _ = test_broker!();
    let blackhole = FaultProxy::start(broker_address()).await;
    blackhole.blackhole();
    let refusing = FaultProxy::start(broker_address()).await;
    refusing.refuse();
    let config = quick_config().with_connect_timeout(Duration::from_secs(1));

    let url = format!(
        "rabbit://guest:s3cret@127.0.0.1:{},guest:s3cret@127.0.0.1:{}/",
        blackhole.port(),
        refusing.port()
    );
    let started = Instant::now();
    let err = Transport::from_url_with_config(&url, config.clone())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let text = err.to_string();
    assert!(
        matches!(&err, RpcError::Transport(TransportError::Unreachable { attempts }) if attempts.len() == 2),
        "{err:?}"
    );
    assert!(err.is_retryable());
    for port in [blackhole.port(), refusing.port()] {
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
    assert!(text.contains("connect_timeout"), "{text}");
    assert!(!text.contains("s3cret"), "the password leaked: {text}");

    // With a healthy host beside one that never answers, the healthy one is reached, whichever
    // order the URL's hosts are tried in.
    let vhost = Vhost::new();
    let url = format!(
        "rabbit://guest:guest@127.0.0.1:{},guest:guest@127.0.0.1:{BROKER_PORT}/{}",
        blackhole.port(),
        vhost.0
    );
    let started = Instant::now();
    let transport = Transport::from_url_with_config(&url, config).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let ConnectionState::Connected { host } = transport.connection_state() else {
        panic!("{}", transport.connection_state());
    };
    assert_eq!(host, format!("guest:****@127.0.0.1:{BROKER_PORT}"));
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn consumers_the_broker_cancels_are_restored() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let url = vhost.url(BROKER_PORT);
    let pair = Pair::start("cancel", &url, &url, quick_config()).await;
    assert_eq!(pair.client.whoami().await.unwrap(), "s1");

    // Deleting the server's topic queue and the client's reply queue cancels their consumers;
    // both declare their queue again and consume it.
    let reply_queue = vhost
        .queues()
        .into_iter()
        .find(|q| q.starts_with("reply_"))
        .expect("the client's reply queue");
    for queue in ["cancel", reply_queue.as_str()] {
        super::support::rabbitmqctl(&["delete_queue", "-p", &vhost.0, queue]);
    }
    until("both queues exist again", Duration::from_secs(5), || {
        let queues = vhost.queues();
        queues.contains(&"cancel".to_owned()) && queues.contains(&reply_queue)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(pair.client.whoami().await.unwrap(), "s1");
    }
    // The server's connection was not lost: only its consumer was cancelled.
    assert!(pair.server_transport.connection_state().is_connected());
}

/// Publishes `body` to topic `dups` through the control exchange, on a connection of its own,
/// and waits for the broker's confirm.
async fn publish_raw(lapin_url: &str, body: &str) {
    let peer = Connection::connect(lapin_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = peer.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            "openstack".into(),
            "dups".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    peer.close(200, "done".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_request_sent_again_after_a_reconnect_does_not_run_twice() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let url = vhost.url(BROKER_PORT);
    let server_transport = connect(&url, quick_config()).await;
    let node = Node::new("s1");
    let _server = serve(&server_transport, "dups", &node).await;

    // A peer sends the very same bytes twice, as a client does when the broker's confirm of
    // the first copy was lost with the connection.
    let lapin_url = format!("amqp://guest:guest@127.0.0.1:{BROKER_PORT}/{}", vhost.0);
    let cast = |id: &str, unique_id: &str| {
        let message =
            serde_json::json!({"method": "record", "args": {"id": id}, "_unique_id": unique_id});
        serde_json::json!({"oslo.version": "2.0", "oslo.message": message.to_string()}).to_string()
    };
    let first = cast("x", &unique("u"));
    publish_raw(&lapin_url, &first).await;
    until("the cast ran", Duration::from_secs(5), || {
        node.times("x") == 1
    })
    .await;

    // The server loses its connection and restores it.
    let states = States::record(&server_transport);
    vhost.close_all_connections();
    until("the server reconnected", Duration::from_secs(10), || {
        states.reconnected() && server_transport.connection_state().is_connected()
    })
    .await;
    // Wait for the server to consume again: a new message runs.
    publish_raw(&lapin_url, &cast("y", &unique("u"))).await;
    until("the server consumes again", Duration::from_secs(10), || {
        node.times("y") == 1
    })
    .await;
    publish_raw(&lapin_url, &first).await;
    publish_raw(&lapin_url, &cast("z", &unique("u"))).await;
    until("the next cast ran", Duration::from_secs(5), || {
        node.times("z") == 1
    })
    .await;
    assert_eq!(node.times("x"), 1, "the copy sent after the reconnect ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_closed_transport_fails_at_once_and_for_good() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let transport = connect(&vhost.url(BROKER_PORT), quick_config()).await;
    let client = ServiceClient::new(&transport, "closed");
    transport.close().await;
    assert_eq!(transport.connection_state(), ConnectionState::Closed);
    let started = Instant::now();
    let err = client.whoami().await.unwrap_err();
    assert!(
        matches!(err, RpcError::Transport(TransportError::Closed { .. })),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = client.record("never".to_owned()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_mixed_python_and_rust_fleet_recovers_from_the_same_cut() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let url = vhost.url(BROKER_PORT);
    let python = crate::common::peer::PythonPeer::start(&url).await;
    python.serve("fleet", "py").await;
    let server_transport = connect(&url, quick_config()).await;
    let _server = serve(&server_transport, "fleet", &Node::new("rs")).await;
    let transport = connect(&url, quick_config()).await;
    let client = ServiceClient::new(&transport, "fleet").with_timeout(Duration::from_secs(30));
    let python_call = |server: &'static str| {
        let python = &python;
        async move {
            python
                .request(serde_json::json!({
                    "cmd": "call", "topic": "fleet", "server": server, "method": "whoami",
                    "timeout": 30,
                }))
                .await
        }
    };
    for server in ["py", "rs"] {
        assert_eq!(
            client.clone().with_server(server).whoami().await.unwrap(),
            server
        );
        assert_eq!(python_call(server).await, Ok(serde_json::json!(server)));
    }

    vhost.close_all_connections();
    let started = Instant::now();
    let mut seen = HashSet::new();
    for server in ["py", "rs"] {
        let rust = client.clone().with_server(server).whoami().await;
        assert_eq!(rust.unwrap(), server, "Rust client to {server}");
        seen.insert(format!("rust->{server}"));
        let from_python = python_call(server).await;
        assert_eq!(
            from_python,
            Ok(serde_json::json!(server)),
            "Python client to {server}"
        );
        seen.insert(format!("python->{server}"));
    }
    assert_eq!(seen.len(), 4);
    assert!(started.elapsed() < Duration::from_secs(30));
    python.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_channel_the_broker_closes_leaves_the_connection_up() {
    let _ = test_broker!();
    let vhost = Vhost::new();
    let url = vhost.url(BROKER_PORT);
    let server_transport = connect(&url, quick_config()).await;
    let server = serve(&server_transport, "channel", &Node::new("s1")).await;
    let transport = connect(&url, quick_config()).await;
    let states = States::record(&transport);
    let client = ServiceClient::new(&transport, "channel");
    // The fanout exchange is declared on the client's publish channel ...
    client.fanout().record("first".to_owned()).await.unwrap();
    // ... and deleted with the server's fanout queue (it is auto-delete): the next fanout cast
    // on that channel gets a 404, which closes the channel, not the connection.
    server.stop().await;
    server.wait().await;
    let fanout_exchanges = || {
        super::support::rabbitmqctl(&["list_exchanges", "-p", &vhost.0, "name"])
            .lines()
            .any(|l| l.trim() == "channel_fanout")
    };
    until(
        "the fanout exchange is gone",
        Duration::from_secs(5),
        || !fanout_exchanges(),
    )
    .await;
    client.fanout().record("second".to_owned()).await.unwrap();
    client.fanout().record("third".to_owned()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !states.reconnected(),
        "a channel error took the connection down"
    );
    assert!(transport.connection_state().is_connected());
}
