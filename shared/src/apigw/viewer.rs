//! The viewer's Lambda adapter: API Gateway's `GET /` and `GET /viewer/{file+}` to
//! [`crate::viewer::respond`]. Public routes: the page holds no data; it asks for a credential.

use std::convert::Infallible;

use lambda_http::{Body, Request, RequestExt, Response};

use crate::viewer::{ViewerConfig, respond};

/// The page or file a request asks for, from the route's path parameter (so a named stage in the
/// URL does not matter).
pub fn handle(req: &Request, config: &ViewerConfig) -> Response<Body> {
    let path = match req.path_parameters_ref().and_then(|p| p.first("file")) {
        Some(file) => format!("/viewer/{file}"),
        None => "/".to_owned(),
    };
    let answer = respond(&path, config);
    let mut response = Response::builder().status(answer.status);
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    // Every file of the page is UTF-8 text (HTML, CSS, JavaScript, SVG, JSON).
    let body = Body::Text(String::from_utf8_lossy(&answer.body).into_owned());
    response.body(body).expect("status and headers are valid")
}

pub async fn run(config: ViewerConfig) -> Result<(), lambda_http::Error> {
    let config = &config;
    lambda_http::run(lambda_http::service_fn(
        move |req: Request| async move { Ok::<_, Infallible>(handle(&req, config)) },
    ))
    .await
}
