//! The OpenAPI document served at `/openapi.json`, generated from the
//! handlers' and types' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::*;
use crate::error::{ErrorBody, ErrorDetail};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ivflake",
        description = "Search Faiss IVF indexes served lazily from object storage."
    ),
    paths(
        routes::search,
        routes::list_indexes,
        routes::get_index,
        routes::add_index,
        routes::remove_index,
        routes::reload,
        routes::warm,
        routes::metrics,
        routes::healthz,
        routes::readyz,
    ),
    components(schemas(
        SearchRequest,
        FilterSpec,
        SearchResponse,
        QueryResult,
        IndexStatus,
        IndexList,
        AddIndexRequest,
        ReloadResponse,
        RemoveResponse,
        Health,
        ErrorBody,
        ErrorDetail
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "search", description = "Nearest-neighbour search"),
        (name = "indexes", description = "The indexes served: status, add, remove, reload, warm"),
        (name = "operations", description = "Health and metrics")
    )
)]
pub struct ApiDoc;

/// Declares the optional bearer-token scheme the protected routes accept.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
