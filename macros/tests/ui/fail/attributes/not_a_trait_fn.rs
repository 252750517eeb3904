use amqp_rpc::rpc_client;

#[rpc_client]
#[inline]
pub(crate) fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
