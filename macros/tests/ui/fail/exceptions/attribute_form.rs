use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote]
pub enum ComputeError {
    #[remote(module)]
    NotFound,
    #[remote(module = builtins)]
    Invalid,
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}

fn main() {}
