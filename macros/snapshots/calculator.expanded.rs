#[amqp_rpc::rpc_client(__amqp_rpc_expanded)]
pub trait Calculator {
    /// Adds two integers.
    fn add(
        &self,
        ctx: &Context,
        x: i64,
        y: i64,
    ) -> impl ::core::future::Future<Output = i64> + ::core::marker::Send;
    /// Divides, refusing zero.
    fn divide(
        &self,
        x: f64,
        y: f64,
    ) -> impl ::core::future::Future<
        Output = Result<f64, CalcError>,
    > + ::core::marker::Send;
    ///Serves this implementation: wraps it in a [`CalculatorEndpoint`], an `Endpoint` to give to a server. A type implementing several RPC traits names the one: `Calculator::into_rpc(value)`.
    fn into_rpc(self) -> CalculatorEndpoint<Self>
    where
        Self: ::core::marker::Sized + ::core::marker::Send + ::core::marker::Sync
            + 'static,
    {
        CalculatorEndpoint::new(self)
    }
}
const _: () = {
    #[allow(dead_code)]
    fn __amqp_rpc_type_assertions() {
        {
            use ::amqp_rpc::__private_v1::{ReturnIsResult as _, ReturnIsValue as _};
            (&::amqp_rpc::__private_v1::ReturnProbe::<i64>::NEW).check();
        }
    }
};
///Serves any implementation of [`Calculator`] as an RPC endpoint (namespace `calc`, version 1.3): made by `Calculator::into_rpc` or `new`, an `Endpoint` to give to a server.
pub struct CalculatorEndpoint<T> {
    inner: T,
}
impl<T> CalculatorEndpoint<T> {
    /// The namespace served.
    pub const NAMESPACE: ::core::option::Option<&'static str> = ::core::option::Option::Some(
        "calc",
    );
    /// The version implemented: requests of the same major and an older or equal
    /// minor are served.
    pub const VERSION: ::amqp_rpc::__private_v1::Version = ::amqp_rpc::__private_v1::Version::new(
        1u64,
        3u64,
    );
    /// Wraps an implementation of the trait.
    pub fn new(inner: T) -> Self {
        Self { inner }
    }
    /// The implementation.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
    /// Unwraps the implementation.
    pub fn into_inner(self) -> T {
        self.inner
    }
}
const _: () = {
    #[allow(unused_imports)]
    use ::std::boxed::Box;
    #[automatically_derived]
    #[::amqp_rpc::__private_v1::async_trait]
    impl<T> ::amqp_rpc::__private_v1::Endpoint for CalculatorEndpoint<T>
    where
        T: Calculator + ::core::marker::Send + ::core::marker::Sync + 'static,
    {
        fn namespace(&self) -> ::core::option::Option<&str> {
            Self::NAMESPACE
        }
        fn version(&self) -> ::amqp_rpc::__private_v1::Version {
            Self::VERSION
        }
        fn has_method(&self, __method: &str) -> bool {
            ::core::matches!(__method, "add" | "divide")
        }
        fn description(
            &self,
        ) -> ::core::option::Option<::amqp_rpc::__private_v1::serde_json::Value> {
            ::core::option::Option::Some(
                ::amqp_rpc::__private_v1::describe_endpoint(
                    "Calculator",
                    ::amqp_rpc::__private_v1::std::vec![
                        ::amqp_rpc::__private_v1::describe_method("add", "1.0",
                        "Adds two integers.", & [("x", { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaTypeName as _, ViaTypeSchema as _
                        }; (&& ::amqp_rpc::__private_v1::SchemaProbe:: < i64 > ::new())
                        .schema() }, { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaOption as _, ViaRequired as _ };
                        (&& ::amqp_rpc::__private_v1::SchemaProbe:: < i64 > ::new())
                        .optional() },), ("y", { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaTypeName as _, ViaTypeSchema as _
                        }; (&& ::amqp_rpc::__private_v1::SchemaProbe:: < i64 > ::new())
                        .schema() }, { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaOption as _, ViaRequired as _ };
                        (&& ::amqp_rpc::__private_v1::SchemaProbe:: < i64 > ::new())
                        .optional() },)], ::core::option::Option::Some({
                        #[allow(unused_imports)] use ::amqp_rpc::__private_v1:: {
                        ViaTypeName as _, ViaTypeSchema as _ }; (&&
                        ::amqp_rpc::__private_v1::SchemaProbe:: < i64 > ::new()).schema()
                        })), ::amqp_rpc::__private_v1::describe_method("divide", "1.3",
                        "Divides, refusing zero.", & [("x", { #[allow(unused_imports)]
                        use ::amqp_rpc::__private_v1:: { ViaTypeName as _, ViaTypeSchema
                        as _ }; (&& ::amqp_rpc::__private_v1::SchemaProbe:: < f64 >
                        ::new()).schema() }, { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaOption as _, ViaRequired as _ };
                        (&& ::amqp_rpc::__private_v1::SchemaProbe:: < f64 > ::new())
                        .optional() },), ("y", { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaTypeName as _, ViaTypeSchema as _
                        }; (&& ::amqp_rpc::__private_v1::SchemaProbe:: < f64 > ::new())
                        .schema() }, { #[allow(unused_imports)] use
                        ::amqp_rpc::__private_v1:: { ViaOption as _, ViaRequired as _ };
                        (&& ::amqp_rpc::__private_v1::SchemaProbe:: < f64 > ::new())
                        .optional() },)], ::core::option::Option::Some({
                        #[allow(unused_imports)] use ::amqp_rpc::__private_v1:: {
                        ViaTypeName as _, ViaTypeSchema as _ }; (&&
                        ::amqp_rpc::__private_v1::SchemaProbe:: < f64 > ::new()).schema()
                        }))
                    ],
                ),
            )
        }
        #[allow(unused_mut, unused_variables)]
        async fn dispatch(
            &self,
            __ctx: ::amqp_rpc::__private_v1::Context,
            __method: &str,
            __args: ::amqp_rpc::__private_v1::Args,
        ) -> ::core::result::Result<
            ::amqp_rpc::__private_v1::Returned,
            ::amqp_rpc::__private_v1::RemoteError,
        > {
            let mut __args = __args;
            match __method {
                "add" => {
                    ::amqp_rpc::__private_v1::only_args(&__args, "add", &["x", "y"])?;
                    let x = ::amqp_rpc::__private_v1::take_arg::<
                        i64,
                    >(&mut __args, "add", "x")?;
                    let y = ::amqp_rpc::__private_v1::take_arg::<
                        i64,
                    >(&mut __args, "add", "y")?;
                    ::amqp_rpc::__private_v1::encode_result::<
                        i64,
                    >("add", &<T as Calculator>::add(&self.inner, &__ctx, x, y).await)
                }
                "divide" => {
                    ::amqp_rpc::__private_v1::only_args(&__args, "divide", &["x", "y"])?;
                    let x = ::amqp_rpc::__private_v1::take_arg::<
                        f64,
                    >(&mut __args, "divide", "x")?;
                    let y = ::amqp_rpc::__private_v1::take_arg::<
                        f64,
                    >(&mut __args, "divide", "y")?;
                    match <T as Calculator>::divide(&self.inner, x, y).await {
                        ::core::result::Result::Ok(__ok) => {
                            ::amqp_rpc::__private_v1::encode_result::<
                                f64,
                            >("divide", &__ok)
                        }
                        ::core::result::Result::Err(__err) => {
                            ::core::result::Result::Err(
                                {
                                    use ::amqp_rpc::__private_v1::{
                                        ViaException as _, ViaSerde as _,
                                    };
                                    (&::amqp_rpc::__private_v1::ErrorCodec::<CalcError>::NEW)
                                        .codec()
                                }
                                    .application_error::<CalcError>("divide", &__err),
                            )
                        }
                    }
                }
                _ => {
                    ::core::result::Result::Err(
                        ::amqp_rpc::__private_v1::no_such_method(__method),
                    )
                }
            }
        }
    }
};
/**Typed client of [`Calculator`]: one method per RPC method, a call or, for a `#[rpc(cast)]` method, a cast, each sent at the version that added it (its `since`) unless [`with_version`](CalculatorClient::with_version) says otherwise.

Cheap to clone. The `with_*` methods are oslo's `prepare()`: each returns a modified copy, leaving the original as it was, so `client.with_server("s1").with_timeout(d).method(...)` overrides for one call. [`cast`](CalculatorClient::cast) and [`fanout`](CalculatorClient::fanout) send any method as a cast (a call cannot be fanned out).*/
#[derive(::core::clone::Clone, ::core::fmt::Debug)]
pub struct CalculatorClient {
    client: ::amqp_rpc::__private_v1::RpcClient,
    context: ::amqp_rpc::__private_v1::Context,
}
impl CalculatorClient {
    /// The namespace addressed.
    pub const NAMESPACE: ::core::option::Option<&'static str> = ::core::option::Option::Some(
        "calc",
    );
    /// The trait's version; each method sends the version that added it (its
    /// `since`), unless overridden by `with_version`.
    pub const VERSION: ::amqp_rpc::__private_v1::Version = ::amqp_rpc::__private_v1::Version::new(
        1u64,
        3u64,
    );
    /// A client of the servers of `topic` on `transport`.
    pub fn new(
        transport: &::amqp_rpc::__private_v1::Transport,
        topic: impl ::core::convert::Into<::std::string::String>,
    ) -> Self {
        Self::from_rpc_client(
            ::amqp_rpc::__private_v1::RpcClient::new(
                transport,
                ::amqp_rpc::__private_v1::Target::new(topic),
            ),
        )
    }
    /// Wraps an [`RpcClient`](#private::RpcClient), addressing the trait's
    /// namespace. The rest of its target (topic, server, exchange, and a version,
    /// taken as a `with_version` override), its timeout, retry and cap are kept.
    pub fn from_rpc_client(client: ::amqp_rpc::__private_v1::RpcClient) -> Self {
        Self {
            client: ::amqp_rpc::__private_v1::with_namespace(client, Self::NAMESPACE),
            context: ::amqp_rpc::__private_v1::Context::new(),
        }
    }
    /// The underlying untyped client.
    pub fn rpc_client(&self) -> &::amqp_rpc::__private_v1::RpcClient {
        &self.client
    }
    /// Sends `context` with the methods that take no context parameter (default:
    /// an empty context).
    pub fn with_context(&self, context: ::amqp_rpc::__private_v1::Context) -> Self {
        Self {
            client: self.client.prepare(),
            context,
        }
    }
    ///Sends to one server of the topic.
    pub fn with_server(
        &self,
        server: impl ::core::convert::Into<::std::string::String>,
    ) -> Self {
        Self {
            client: self.client.prepare().with_server(server),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///Lets calls take `timeout` in all, and casts try for as long (default 60 s).
    pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
        Self {
            client: self.client.prepare().with_timeout(timeout),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///oslo's `retry` for sending: `None` keeps trying until the timeout, `Some(0)` tries once, `Some(n)` retries `n` times.
    pub fn with_retry(&self, retry: ::core::option::Option<u32>) -> Self {
        Self {
            client: self.client.prepare().with_retry(retry),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///Asks servers for heartbeats and fails a call when none arrives for `timeout`.
    pub fn with_call_monitor_timeout(&self, timeout: ::core::time::Duration) -> Self {
        Self {
            client: self.client.prepare().with_call_monitor_timeout(timeout),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///Refuses, before sending, methods whose `since` version `cap` does not cover.
    pub fn with_version_cap(&self, cap: ::amqp_rpc::__private_v1::Version) -> Self {
        Self {
            client: self.client.prepare().with_version_cap(cap),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///Sends every method at `version` instead of the version that added it (its `since`), as oslo's `prepare(version=...)`. A method is refused before sending, with `RpcError::VersionOutOfRange`, unless `version` is one at which it exists: of the trait's major, not older than its `since`, not newer than [`VERSION`](Self::VERSION). The version cap still applies.
    pub fn with_version(&self, version: ::amqp_rpc::__private_v1::Version) -> Self {
        Self {
            client: self.client.prepare().with_version(version),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///Addresses `namespace` instead of the trait's.
    pub fn with_namespace(
        &self,
        namespace: impl ::core::convert::Into<::std::string::String>,
    ) -> Self {
        Self {
            client: self.client.prepare().with_namespace(namespace),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    ///Addresses oslo's default namespace (`None`) instead of the trait's.
    pub fn without_namespace(&self) -> Self {
        Self {
            client: self.client.prepare().without_namespace(),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    /// Whether the version cap lets a message of `version` be sent.
    pub fn can_send_version(&self, version: &::amqp_rpc::__private_v1::Version) -> bool {
        self.client.can_send_version(version)
    }
    /// Every method as a cast, to one server of the topic (or the one
    /// `with_server` names): sent without waiting for a reply.
    pub fn cast(&self) -> CalculatorCast {
        CalculatorCast {
            client: self.client.prepare(),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    /// Every method as a cast to every server of the topic (fanout; the server is
    /// ignored).
    pub fn fanout(&self) -> CalculatorCast {
        CalculatorCast {
            client: self.client.prepare().with_fanout(true),
            context: ::core::clone::Clone::clone(&self.context),
        }
    }
    /// Adds two integers.
    #[allow(clippy::too_many_arguments)]
    pub async fn add(
        &self,
        ctx: &::amqp_rpc::__private_v1::Context,
        x: i64,
        y: i64,
    ) -> ::core::result::Result<i64, ::amqp_rpc::__private_v1::RpcError> {
        struct __AmqpRpcKwargs<'__amqp_rpc> {
            x: &'__amqp_rpc i64,
            y: &'__amqp_rpc i64,
        }
        #[automatically_derived]
        impl ::amqp_rpc::__private_v1::serde::Serialize for __AmqpRpcKwargs<'_> {
            fn serialize<__AmqpRpcS: ::amqp_rpc::__private_v1::serde::Serializer>(
                &self,
                __serializer: __AmqpRpcS,
            ) -> ::core::result::Result<__AmqpRpcS::Ok, __AmqpRpcS::Error> {
                let mut __map = ::amqp_rpc::__private_v1::serde::Serializer::serialize_map(
                    __serializer,
                    ::core::option::Option::Some(2usize),
                )?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    i64,
                >(&mut __map, "x", self.x)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    i64,
                >(&mut __map, "y", self.y)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::end(__map)
            }
        }
        let __kwargs = __AmqpRpcKwargs { x: &x, y: &y };
        ::amqp_rpc::__private_v1::call::<
            i64,
        >(
                &self.client,
                ::amqp_rpc::__private_v1::Version::new(1u64, 0u64),
                ::amqp_rpc::__private_v1::Version::new(1u64, 3u64),
                ctx,
                "add",
                __kwargs,
            )
            .await
    }
    /// Divides, refusing zero.
    #[allow(clippy::too_many_arguments)]
    pub async fn divide(
        &self,
        x: f64,
        y: f64,
    ) -> ::core::result::Result<f64, ::amqp_rpc::__private_v1::CallError<CalcError>> {
        struct __AmqpRpcKwargs<'__amqp_rpc> {
            x: &'__amqp_rpc f64,
            y: &'__amqp_rpc f64,
        }
        #[automatically_derived]
        impl ::amqp_rpc::__private_v1::serde::Serialize for __AmqpRpcKwargs<'_> {
            fn serialize<__AmqpRpcS: ::amqp_rpc::__private_v1::serde::Serializer>(
                &self,
                __serializer: __AmqpRpcS,
            ) -> ::core::result::Result<__AmqpRpcS::Ok, __AmqpRpcS::Error> {
                let mut __map = ::amqp_rpc::__private_v1::serde::Serializer::serialize_map(
                    __serializer,
                    ::core::option::Option::Some(2usize),
                )?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    f64,
                >(&mut __map, "x", self.x)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    f64,
                >(&mut __map, "y", self.y)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::end(__map)
            }
        }
        let __kwargs = __AmqpRpcKwargs { x: &x, y: &y };
        match ::amqp_rpc::__private_v1::call::<
            f64,
        >(
                &self.client,
                ::amqp_rpc::__private_v1::Version::new(1u64, 3u64),
                ::amqp_rpc::__private_v1::Version::new(1u64, 3u64),
                &self.context,
                "divide",
                __kwargs,
            )
            .await
        {
            ::core::result::Result::Ok(__ok) => ::core::result::Result::Ok(__ok),
            ::core::result::Result::Err(__error) => {
                ::core::result::Result::Err(
                    {
                        use ::amqp_rpc::__private_v1::{ViaException as _, ViaSerde as _};
                        (&::amqp_rpc::__private_v1::ErrorCodec::<CalcError>::NEW).codec()
                    }
                        .from_rpc::<CalcError>(__error),
                )
            }
        }
    }
}
///Every method of [`Calculator`] sent as a cast, which gets no reply: made by [`CalculatorClient::cast`] (to one server of the topic) and [`CalculatorClient::fanout`] (to every server). Each returns once the message is sent.
#[derive(::core::clone::Clone, ::core::fmt::Debug)]
pub struct CalculatorCast {
    client: ::amqp_rpc::__private_v1::RpcClient,
    context: ::amqp_rpc::__private_v1::Context,
}
impl CalculatorCast {
    /// Adds two integers.
    #[allow(clippy::too_many_arguments)]
    pub async fn add(
        &self,
        ctx: &::amqp_rpc::__private_v1::Context,
        x: i64,
        y: i64,
    ) -> ::core::result::Result<(), ::amqp_rpc::__private_v1::RpcError> {
        struct __AmqpRpcKwargs<'__amqp_rpc> {
            x: &'__amqp_rpc i64,
            y: &'__amqp_rpc i64,
        }
        #[automatically_derived]
        impl ::amqp_rpc::__private_v1::serde::Serialize for __AmqpRpcKwargs<'_> {
            fn serialize<__AmqpRpcS: ::amqp_rpc::__private_v1::serde::Serializer>(
                &self,
                __serializer: __AmqpRpcS,
            ) -> ::core::result::Result<__AmqpRpcS::Ok, __AmqpRpcS::Error> {
                let mut __map = ::amqp_rpc::__private_v1::serde::Serializer::serialize_map(
                    __serializer,
                    ::core::option::Option::Some(2usize),
                )?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    i64,
                >(&mut __map, "x", self.x)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    i64,
                >(&mut __map, "y", self.y)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::end(__map)
            }
        }
        let __kwargs = __AmqpRpcKwargs { x: &x, y: &y };
        ::amqp_rpc::__private_v1::cast(
                &self.client,
                ::amqp_rpc::__private_v1::Version::new(1u64, 0u64),
                ::amqp_rpc::__private_v1::Version::new(1u64, 3u64),
                ctx,
                "add",
                __kwargs,
            )
            .await
    }
    /// Divides, refusing zero.
    #[allow(clippy::too_many_arguments)]
    pub async fn divide(
        &self,
        x: f64,
        y: f64,
    ) -> ::core::result::Result<(), ::amqp_rpc::__private_v1::RpcError> {
        struct __AmqpRpcKwargs<'__amqp_rpc> {
            x: &'__amqp_rpc f64,
            y: &'__amqp_rpc f64,
        }
        #[automatically_derived]
        impl ::amqp_rpc::__private_v1::serde::Serialize for __AmqpRpcKwargs<'_> {
            fn serialize<__AmqpRpcS: ::amqp_rpc::__private_v1::serde::Serializer>(
                &self,
                __serializer: __AmqpRpcS,
            ) -> ::core::result::Result<__AmqpRpcS::Ok, __AmqpRpcS::Error> {
                let mut __map = ::amqp_rpc::__private_v1::serde::Serializer::serialize_map(
                    __serializer,
                    ::core::option::Option::Some(2usize),
                )?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    f64,
                >(&mut __map, "x", self.x)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::serialize_entry::<
                    str,
                    f64,
                >(&mut __map, "y", self.y)?;
                ::amqp_rpc::__private_v1::serde::ser::SerializeMap::end(__map)
            }
        }
        let __kwargs = __AmqpRpcKwargs { x: &x, y: &y };
        ::amqp_rpc::__private_v1::cast(
                &self.client,
                ::amqp_rpc::__private_v1::Version::new(1u64, 3u64),
                ::amqp_rpc::__private_v1::Version::new(1u64, 3u64),
                &self.context,
                "divide",
                __kwargs,
            )
            .await
    }
}
