//! `#[rpc_client]` alone describes a remote service; no endpoint is generated.

use amqp_rpc::{Context, Transport, rpc_client};

#[rpc_client(namespace = "compute", version = "5.1")]
pub trait ComputeApi {
    /// Reboots an instance.
    #[rpc(cast)]
    async fn reboot_instance(&self, ctx: &Context, instance_id: String, reboot_type: String);
    /// The console log of an instance.
    #[rpc(since = "5.1")]
    async fn get_console_output(&self, ctx: &Context, instance_id: String) -> String;
    /// Liveness.
    async fn ping(&self);
    /// Named as the `into_rpc` of `#[rpc_endpoint]`: fine for a client-only trait.
    async fn into_rpc(&self);
}

fn main() {
    let transport = Transport::memory();
    let compute = ComputeApiClient::new(&transport, "compute").with_server("host-1");
    assert_eq!(ComputeApiClient::NAMESPACE, Some("compute"));
    assert_eq!(ComputeApiClient::VERSION, amqp_rpc::Version::new(5, 1));
    assert!(compute.can_send_version(&amqp_rpc::Version::new(5, 1)));
    let _fanout: ComputeApiCast = compute.fanout();
    let _cast: ComputeApiCast = compute.cast();
}
