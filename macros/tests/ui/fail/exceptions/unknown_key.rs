use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote(module = "nova.exception", kind = "not_found")]
pub enum ComputeError {
    #[remote(class = "InstanceNotFound", message = "gone")]
    NotFound,
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

fn main() {}
