use amqp_rpc::RemoteException;

#[derive(Debug, RemoteException)]
#[remote(module = "nova.exception")]
pub struct InstanceNotFound {
    pub instance_id: String,
}

fn main() {}
