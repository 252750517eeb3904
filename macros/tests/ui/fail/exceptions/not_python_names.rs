use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote(module = "nova/exception")]
pub enum ComputeError {
    #[remote(class = "Instance-Not-Found")]
    InstanceNotFound,
    #[remote(module = "nova..exception")]
    FlavorNotFound,
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

fn main() {}
