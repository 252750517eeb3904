use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote(module = "nova.exception")]
pub struct InstanceNotFound {
    #[remote(name = "id")]
    pub instance_id: String,
}

impl std::fmt::Display for InstanceNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

fn main() {}
