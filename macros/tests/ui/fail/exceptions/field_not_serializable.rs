use amqp_rpc::RemoteException;

pub struct InstanceId(String);

#[derive(RemoteException)]
#[remote(module = "nova.exception")]
pub enum ComputeError {
    InstanceNotFound { instance_id: InstanceId },
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

fn main() {}
