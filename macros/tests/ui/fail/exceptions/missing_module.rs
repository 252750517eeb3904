use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
pub enum ComputeError {
    #[remote(module = "nova.exception")]
    InstanceNotFound {
        instance_id: String,
    },
    FlavorNotFound {
        flavor_id: String,
    },
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

fn main() {}
