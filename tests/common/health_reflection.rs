//! Calls to the standard services beside AuditService, which need no token:
//! `grpc.health.v1.Health` and server reflection (`v1` and `v1alpha`). Use
//! them to see whether a server is up or stopping, and what it lists.

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks the health service at `url` how the server is, sending `token` as a
/// bearer token if one is given. A server that cannot be reached is
/// UNAVAILABLE.
pub(crate) async fn health(url: &str, token: Option<&str>) -> Result<ServingStatus, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    check(channel, "", token).await
}

/// Health of `service` (`""` for the whole server) on `channel`.
pub(crate) async fn health_of(
    channel: &Channel,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    check(channel.clone(), service, None).await
}

/// Waits until health of `service` on `channel` is `want`.
pub(crate) async fn wait_for_health(channel: &Channel, service: &str, want: ServingStatus) {
    super::wait_until(&format!("health of {service:?} {want:?}"), || async {
        match health_of(channel, service).await {
            Ok(status) if status == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Whether the server at `url` reports SERVING through the health service.
pub(crate) async fn serving(url: &str) -> bool {
    matches!(health(url, None).await, Ok(ServingStatus::Serving))
}

/// One `Check` of `service` on `channel`, with `token` as a bearer token if
/// one is given.
async fn check(
    channel: Channel,
    service: &str,
    token: Option<&str>,
) -> Result<ServingStatus, tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let response = HealthClient::new(channel).check(request).await?;
    Ok(response.into_inner().status())
}

/// The service names reflection `v1` lists on `ch`.
pub(crate) async fn reflection_v1_services(ch: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = v1::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match responses.message().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("reflection v1 answered ListServices with {other:?}"),
    }
}

/// What reflection `v1alpha` answers on `ch` to `FileContainingSymbol`
/// for `symbol`.
pub(crate) async fn reflection_v1alpha_file(
    ch: Channel,
    symbol: &str,
) -> Option<tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse> {
    use tonic_reflection::pb::v1alpha;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                symbol.to_owned(),
            ),
        ),
    };
    let mut responses = v1alpha::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    responses.message().await.unwrap().unwrap().message_response
}
