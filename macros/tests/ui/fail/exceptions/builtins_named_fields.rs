// Python's built-in exceptions take no keyword arguments: `ValueError(reason="x")` is a
// TypeError, and the caller would get a RemoteError instead.
use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote(module = "nova.exception")]
pub enum ComputeError {
    #[remote(module = "builtins", class = "ValueError")]
    Invalid { reason: String },
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid")
    }
}

fn main() {}
