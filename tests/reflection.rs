//! Stock gRPC tools find the hotline's services by server reflection, the
//! current `v1` and the `v1alpha` that older clients ask for alone.

mod common;

use common::{Cluster, FAST_NORMS};
use tonic_reflection::pb::{v1, v1alpha};

const SERVICES: [&str; 3] = ["hotline.v1.Federation", "hotline.v1.Operator", "hotline.v1.Audit"];

fn channel(c: &Cluster) -> tonic::transport::Channel {
    let config = &c.configs[0];
    hotline::transport::channel(
        &config.client_node,
        &config.ca_pem().unwrap(),
        &config.client_cert().unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_every_hotline_service() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = v1::server_reflection_client::ServerReflectionClient::new(channel(&c))
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(SERVICES.iter().all(|s| names.iter().any(|n| n == s)), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_every_hotline_service_for_older_tools() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = v1alpha::server_reflection_client::ServerReflectionClient::new(channel(&c))
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(SERVICES.iter().all(|s| names.iter().any(|n| n == s)), "{names:?}");
}
