//! The ivflake HTTP search server (axum): index registry, search API,
//! metrics, limits and hot reload. Under construction (issue 4).
