// A caller tells the variants apart by module and class only.
use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote(module = "nova.exception")]
pub enum ComputeError {
    InstanceNotFound {
        instance_id: String,
    },
    #[remote(class = "InstanceNotFound")]
    ServerNotFound {
        server_id: String,
    },
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

fn main() {}
