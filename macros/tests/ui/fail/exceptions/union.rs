use amqp_rpc::RemoteException;

#[derive(RemoteException)]
#[remote(module = "nova.exception")]
pub union Failure {
    code: u32,
}

fn main() {}
