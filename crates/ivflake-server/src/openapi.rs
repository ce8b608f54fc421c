//! The OpenAPI document served at `/openapi.json`, generated from the
//! handlers' and types' annotations. The responses every protected route can
//! give (401, 503 past the request limit, 504 past `request_timeout_ms`)
//! are added by [`CommonResponses`] rather than repeated on each handler.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api::*;
use crate::api_error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ivflake",
        description = "Search Faiss IVF indexes served lazily from object storage. \
            A search body is JSON, or raw little-endian float32 (`application/octet-stream`) \
            whose shape, options and id filter (`allow`, `deny`, `range`) go in the query string; \
            the query string is ignored for JSON bodies. Attribute filters (`attribute_filter`, \
            Amazon S3 Vectors' operators) and `return_attributes` are JSON-body only; the id \
            `filter` keeps its form and combines with them."
    ),
    paths(
        routes::search,
        routes::list_indexes,
        routes::get_index,
        routes::add_index,
        routes::remove_index,
        routes::reload,
        routes::warm,
        routes::writes::upsert,
        routes::writes::delete,
        routes::writes::compact,
        routes::writes::get,
        routes::text::query,
        routes::text::set_text_fields,
        routes::metrics,
        routes::healthz,
        routes::readyz,
        routes::openapi,
    ),
    components(schemas(
        SearchRequest,
        ivflake::IdFilterSpec,
        crate::config::IndexConfig,
        SearchResponse,
        QueryResult,
        IndexStatus,
        IndexList,
        AddIndexRequest,
        ReloadResponse,
        RemoveResponse,
        ivflake::WarmSpec,
        ivflake::WarmReport,
        ivflake::PreloadStatus,
        ivflake::OpenStats,
        ivflake::PreloadState,
        ivflake::BackgroundLoad,
        crate::config::PreloadSetting,
        Health,
        ErrorBody,
        ErrorDetail,
        ErrorCode,
        routes::writes::UpsertRequest,
        routes::writes::DeleteRequest,
        routes::writes::WriteResponse,
        routes::writes::CompactResponse,
        routes::writes::GetRequest,
        routes::writes::GetResponse,
        routes::text::QueryRequest,
        routes::text::QueryHit,
        routes::text::QueryResponse,
        routes::text::TextFieldsRequest,
        routes::text::TextFieldsResponse,
        routes::writes::KeptRowBody
    )),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "search", description = "Nearest-neighbour search"),
        (name = "indexes", description = "The indexes served: status, add, remove, reload, warm"),
        (name = "writes", description = "Upserts, deletes and compaction of a writable index"),
        (name = "operations", description = "Health, metrics and this document")
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

/// Adds the answers of the middleware in front of every protected route
/// (`/v1/...` and `/metrics`), unless the route documents its own.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let common = [
            ("401", "Missing or wrong bearer token (when auth is on)"),
            ("503", "Over `limits.max_requests_in_flight`: retry after `Retry-After`"),
            ("504", "The request ran past `request_timeout_ms`"),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !(path.starts_with("/v1/") || path == "/metrics") {
                continue;
            }
            for operation in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client generated from the document knows every code the API sends,
    /// and `ErrorCode::ALL` misses none (the schema comes from the variants).
    #[test]
    fn the_error_body_lists_every_code() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorDetail"]["properties"]["code"]["$ref"], "#/components/schemas/ErrorCode",
            "{}",
            schemas["ErrorDetail"]
        );
        let mut documented: Vec<&str> = schemas["ErrorCode"]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("ErrorCode is no enum: {}", schemas["ErrorCode"]))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        documented.sort_unstable();
        codes.sort_unstable();
        assert_eq!(documented, codes);
    }

    /// The mirror schemas list the library types' fields, no more, no fewer.
    #[test]
    fn warm_schemas_mirror_the_library_types() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (name, value) in [
            ("WarmSpec", serde_json::to_value(ivflake::WarmSpec::default()).unwrap()),
            (
                "WarmReport",
                serde_json::to_value(ivflake::WarmReport::default()).unwrap(),
            ),
            (
                "BackgroundLoad",
                serde_json::to_value(ivflake::BackgroundLoad::default()).unwrap(),
            ),
        ] {
            let mut documented: Vec<&String> = doc["components"]["schemas"][name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} schema missing"))
                .keys()
                .collect();
            let mut fields: Vec<&String> = value.as_object().unwrap().keys().collect();
            documented.sort();
            fields.sort();
            assert_eq!(documented, fields, "{name}");
        }
    }
}
